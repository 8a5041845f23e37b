"""The SQL rules (run by the engine on every row) and the Python rules (used to name bad
lines) must agree on every value: hand-picked edge cases, every Unicode code point, and
seeded random strings, for every identifier kind and every cell type."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import duckdb
import pytest

from segops.engine import cells, identifiers
from segops.model import Identifier, IdentifierKind

SHA = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
MD5 = "5f4dcc3b5aa765d61d8327deb882cf99"
VALUES = [
    SHA,
    SHA.upper(),
    SHA[:-1],
    SHA + "0",
    SHA[:-1] + "g",
    SHA[:-1] + " ",
    MD5,
    "",
    None,
    "crm-42",
    "crm 42",
    "crm\t42",
    "crm\x0042",
    "crm\u00a042",
    "vec:123",
    "mob:ios:raw:6F9619FF-8B86-D011-B42D-00CF4FC964FF",
    "é" * 256,
    "é" * 257,
    "e\u0301" * 128,  # 256 code points: a combining mark counts as one
    "e\u0301" * 129,
    "x" * 300,
    "42",
    "-1.5",
    "1e+20",
    "1.",
    ".5",
    "007",
    "NaN",
    "a,b",
    'a"b',
    "a#b",
    "jane.doe+tag@example.com",
    "名前",
    "\U0001f600",  # an emoji (So): visible
    "a\u200bb",  # ZERO WIDTH SPACE
    "a\u200db",  # ZERO WIDTH JOINER
    "a\u202eb",  # RIGHT-TO-LEFT OVERRIDE
    "a\u2060b",  # WORD JOINER
    "a\u00adb",  # SOFT HYPHEN
    "a\u034fb",  # COMBINING GRAPHEME JOINER (Mn, default-ignorable)
    "a\ufe0fb",  # VARIATION SELECTOR-16
    "a\u3164b",  # HANGUL FILLER (Lo, default-ignorable)
    "a\u2800b",  # BRAILLE PATTERN BLANK
    "a\ufffdb",  # REPLACEMENT CHARACTER: decoding damage
    "a\ue000b",  # private use
    "a\U000e0041b",  # TAG LATIN CAPITAL LETTER A
    "a\u0378b",  # unassigned
    "a\u2028b",  # LINE SEPARATOR
    "\ufeffabc",  # a BOM at the start
]
KINDS = [
    Identifier(IdentifierKind.EMAIL_HASH, "v", "sha256"),
    Identifier(IdentifierKind.EMAIL_HASH, "v", "md5"),
    Identifier(IdentifierKind.EMAIL_HASH, "v"),
    Identifier(IdentifierKind.USER_ACCOUNT_ID, "v"),
    Identifier(IdentifierKind.USER_ACCOUNT_ID, "v", integers=True),
    Identifier(IdentifierKind.USER_AGENT_ID, "v"),
    Identifier(IdentifierKind.ATTRIBUTE, "v", attribute_name="email", attribute_type="string"),
    Identifier(IdentifierKind.ATTRIBUTE, "v", attribute_name="score", attribute_type="double"),
    Identifier(IdentifierKind.ATTRIBUTE, "v", "sha256", "email", "string"),
]
TEXT_KINDS = [k for k in KINDS if k.format is None]


def kind_id(identifier: Identifier) -> str:
    return "-".join(str(p) for p in (identifier.kind, identifier.format, identifier.attribute_type))


def sql_valid(identifier: Identifier, values: Sequence[str | None]) -> list[bool]:
    """Return, for each text value, whether the engine's SQL gives it a key."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
    con.execute("INSERT INTO t SELECT unnest($1), unnest($2)", [list(range(len(values))), values])
    sql = identifiers.key_sql(identifier, "v")
    rows = con.execute(f"SELECT i, ({sql}) IS NOT NULL FROM t ORDER BY i").fetchall()
    return [bool(ok) for _, ok in rows]


def python_valid(identifier: Identifier, values: Sequence[object]) -> list[bool]:
    return [identifiers.identifier_problem(identifier, v) is None for v in values]


@pytest.mark.parametrize("identifier", KINDS, ids=kind_id)
def test_sql_and_python_rules_agree_on_edge_cases(identifier: Identifier) -> None:
    assert sql_valid(identifier, VALUES) == python_valid(identifier, VALUES)


RULES = {identifiers.rule(k): k for k in TEXT_KINDS}  # one per distinct text rule


@pytest.mark.parametrize("identifier", RULES.values(), ids=kind_id)
def test_sql_and_python_rules_agree_on_every_code_point(identifier: Identifier) -> None:
    rule = identifiers.rule(identifier)
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    values = ["1" * 16 + c + "2" * 15 for c in chars]  # digits around: 32 long, like a hash
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
    con.execute("INSERT INTO t SELECT unnest($1), unnest($2)", [list(range(len(values))), values])
    sql = [r[1] for r in con.execute(f"SELECT i, {rule.sql('v')} FROM t ORDER BY i").fetchall()]
    python = [rule.compiled.fullmatch(v) is not None for v in values]
    differ = [f"U+{ord(c):04X}" for c, s, p in zip(chars, sql, python, strict=True) if s != p]
    assert not differ, differ[:20]
    assert any(python) and not all(python)


@pytest.mark.parametrize("identifier", TEXT_KINDS, ids=kind_id)
@pytest.mark.parametrize("seed", range(3))
def test_sql_and_python_rules_agree_on_random_strings(identifier: Identifier, seed: int) -> None:
    rng = random.Random(seed)
    pool = "az09-_.:@+,#\"' é\t\u200d\u202e\u00ad\u034f\ufe0f\u3000名\U0001f600\ue000\u0378"
    values = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 12))) for _ in range(4000)]
    values += [str(rng.randint(-(10**20), 10**20)) for _ in range(200)]
    values += [repr(rng.uniform(-1e6, 1e6)) for _ in range(200)]
    assert sql_valid(identifier, values) == python_valid(identifier, values)


@pytest.mark.parametrize(
    "char",
    ["\u200b", "\u200d", "\u202e", "\u2060", "\u00ad", "\u034f", "\ufe0f", "\u3164", "\ufeff"],
)
@pytest.mark.parametrize("identifier", TEXT_KINDS[2:], ids=kind_id)  # not the hex-only ones
def test_invisible_characters_are_refused_with_their_code_point(
    identifier: Identifier, char: str
) -> None:
    problem = identifiers.identifier_problem(identifier, f"abc{char}def")
    assert problem is not None
    if identifier.attribute_type != "double":
        assert f"U+{ord(char):04X}" in problem
    assert "abc" not in problem and "def" not in problem  # never the value


def test_the_whitelist_per_kind() -> None:
    account, agent, email, double, unhashed = (
        KINDS[3],
        KINDS[5],
        KINDS[6],
        KINDS[7],
        KINDS[2],
    )
    assert identifiers.identifier_problem(account, "crm-42 é名") is not None  # a space
    assert identifiers.identifier_problem(account, 'crm-42é名,#"') is None
    assert identifiers.identifier_problem(agent, "vec:12é") is not None  # ASCII only
    assert identifiers.identifier_problem(agent, "mob:ios:raw:AB-12") is None
    assert identifiers.identifier_problem(email, "a,b@example.com") is not None  # CSV-breaking
    assert identifiers.identifier_problem(email, "a.b+c@exämple.com") is None
    assert identifiers.identifier_problem(double, "-1.5e3") is None
    assert identifiers.identifier_problem(double, "1,5") is not None
    assert identifiers.identifier_problem(unhashed, MD5) is None
    assert identifiers.identifier_problem(unhashed, MD5.upper()) is not None
    assert identifiers.identifier_problem(unhashed, "abc") is not None  # too short for a hash


# -- cells: the same value read from a typed cell, in SQL and in Python -----------------------

JSON_VALUES: list[object] = [
    "crm-1",
    "",
    42,
    0,
    -7,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**30,
    1.5,
    1.0,
    1e16,
    -0.0,
    True,
    False,
    None,
    {"a": 1},
    {},
    [1, 2],
    [],
    "x\u0000y",
    "a\u200db",
    "é",
]
JSON_TEXTS = [json.dumps(v) for v in JSON_VALUES] + ["NaN", "Infinity", "-Infinity", "1e400"]


def json_cells_sql(sql_for: str) -> list[object]:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, c JSON)")
    texts = JSON_TEXTS
    con.execute("INSERT INTO t SELECT unnest($1), unnest($2)", [list(range(len(texts))), texts])
    return [r[1] for r in con.execute(f"SELECT i, {sql_for} FROM t ORDER BY i").fetchall()]


def json_cells_python() -> list[object]:
    return [json.loads(t) for t in JSON_TEXTS]


@pytest.mark.parametrize("identifier", KINDS, ids=kind_id)
def test_json_cells_sql_and_python_agree(identifier: Identifier) -> None:
    text = cells.text_sql("c", cells.JSON, identifiers.accepted(identifier))
    assert text is not None
    sql = json_cells_sql(f"({identifiers.key_sql(identifier, f'({text})')}) IS NOT NULL")
    python = python_valid(identifier, json_cells_python())
    assert [bool(v) for v in sql] == python


def test_a_json_string_keeps_no_quotes_and_a_number_needs_integers() -> None:
    account, integers = KINDS[3], KINDS[4]
    text = cells.text_sql("c", cells.JSON, identifiers.accepted(account))
    keys = json_cells_sql(f"({identifiers.key_sql(account, f'({text})')})")
    assert keys[0] == "crm-1"  # not '"crm-1"'
    assert keys[JSON_VALUES.index(42)] is None
    text = cells.text_sql("c", cells.JSON, identifiers.accepted(integers))
    keys = json_cells_sql(f"({identifiers.key_sql(integers, f'({text})')})")
    assert keys[JSON_VALUES.index(42)] == "42"
    assert keys[JSON_VALUES.index(1.5)] is None  # a decimal is never an account id
    assert keys[JSON_VALUES.index(True)] is None
    problem = identifiers.identifier_problem(account, 42)
    assert problem is not None and "integers: true" in problem and "42" not in problem


def agree(column_type: str, cells_in: Sequence[object], sql: str | None) -> list[bool]:
    """Return, for each cell stored in a column of `column_type`, whether `sql` accepts it."""
    assert sql is not None
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t (i INTEGER, c {column_type})")
    # The readers give a JSON null as SQL NULL (read_json does; inline cells are never null).
    stored = [None if column_type == cells.JSON and c == "null" else c for c in cells_in]
    data = [list(range(len(cells_in))), stored]
    con.execute("INSERT INTO t SELECT unnest($1), unnest($2)", data)
    got = con.execute(f"SELECT i, c IS NULL OR ({sql}) IS NOT NULL FROM t ORDER BY i").fetchall()
    return [bool(r[1]) for r in got]


BAG_TEXTS = ['{"a": 1}', "{}", "[1]", "nope", '"s"', '{"a": NaN}', '{"a":1,"a":2}', " {} ", "{"]


def test_data_bag_text_rules_agree() -> None:
    sql = identifiers.data_bag_sql("c", cells.TEXT)
    expected = [identifiers.data_bag_problem("c", v) is None for v in BAG_TEXTS]
    assert agree(cells.TEXT, BAG_TEXTS, sql) == expected
    assert expected[:3] == [True, True, False]


def test_data_bag_json_rules_agree() -> None:
    texts = JSON_TEXTS + [json.dumps(t) for t in BAG_TEXTS] + ['{"a": {"b": [1, null]}}']
    sql = identifiers.data_bag_sql("c", cells.JSON)
    expected = [identifiers.data_bag_problem("c", json.loads(t)) is None for t in texts]
    assert agree(cells.JSON, texts, sql) == expected
    assert expected[JSON_VALUES.index({"a": 1})] and not expected[JSON_VALUES.index(42)]


@pytest.mark.parametrize("column_type", [cells.JSON, cells.TEXT, "BIGINT", "UINTEGER"])
def test_expiration_ts_rules_agree(column_type: str) -> None:
    texts: list[object]
    if column_type == cells.JSON:
        texts = JSON_TEXTS + ['" 42 "', '"\\t42"', '"+5"', '"1_000"', '"0"', '"-1"']
        python = [json.loads(str(t)) for t in texts]
    elif column_type == cells.TEXT:
        texts = ["0", "1700000000000", "-1", " 42 ", "\t42", "+5", "1_000", "1.5", "soon", "9" * 19]
        python = list(texts)
    else:
        texts = [0, 42, 4_000_000_000]
        texts += [1_700_000_000_000, 10**18, -1] if column_type == "BIGINT" else []
        python = list(texts)
    sql = identifiers.expiration_ts_sql("c", column_type)
    expected = [identifiers.expiration_ts_problem("c", v) is None for v in python]
    assert agree(column_type, texts, sql) == expected
    assert any(expected) and (column_type == "UINTEGER" or not all(expected))


@pytest.mark.parametrize(
    ("column_type", "accept", "valid"),
    [
        ("VARCHAR", {cells.STRING}, True),
        ("BIGINT", {cells.STRING}, False),
        ("BIGINT", {cells.STRING, cells.INTEGER}, True),
        ("UTINYINT", {cells.STRING, cells.INTEGER}, True),
        ("HUGEINT", {cells.STRING, cells.INTEGER}, False),  # past 64 bits: a number
        ("DOUBLE", {cells.STRING, cells.INTEGER}, False),
        ("DOUBLE", {cells.STRING, cells.INTEGER, cells.NUMBER}, True),
        ("DECIMAL(10,2)", {cells.STRING, cells.INTEGER, cells.NUMBER}, True),
        ("BOOLEAN", {cells.STRING, cells.INTEGER, cells.NUMBER}, False),
        ("VARCHAR[]", {cells.STRING}, False),
        ("STRUCT(a INTEGER)", {cells.STRING}, False),
        ("DATE", {cells.STRING}, False),
        ("BLOB", {cells.STRING}, False),
    ],
)
def test_a_typed_column_is_accepted_or_refused_as_a_whole(
    column_type: str, accept: set[str], valid: bool
) -> None:
    assert (cells.text_sql("c", column_type, accept) is not None) is valid


def test_hash_keys_are_stored_as_bytes_and_sent_as_lowercase_hex() -> None:
    ident = KINDS[0]
    sql = identifiers.key_sql(ident, "?::VARCHAR")
    (key,) = duckdb.execute(f"SELECT {sql}", [SHA] * sql.count("?")).fetchone() or (None,)
    assert isinstance(key, bytes) and len(key) == 32
    text = identifiers.key_text_sql(ident.encoding, "?::BLOB")
    assert duckdb.execute(f"SELECT {text}", [key]).fetchone() == (SHA,)


def test_merge_keeps_only_confirmed_delta_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from segops.engine.duck import DuckDBEngine
    from segops.model import EngineConfig, KeyEncoding

    engine = DuckDBEngine(tmp_path, tmp_path / "work", EngineConfig(memory_limit="256MB"))
    snap = tmp_path / "snap.parquet"
    delta = tmp_path / "delta.parquet"
    duckdb.execute(f"COPY (SELECT * FROM (VALUES ('a'), ('b'), ('c')) t(k)) TO '{snap}'").fetchall()
    rows = "('remove', 'a'), ('remove', 'b'), ('add', 'x'), ('add', 'y')"
    duckdb.execute(f"COPY (SELECT * FROM (VALUES {rows}) t(op, k)) TO '{delta}'").fetchall()
    # rows 0..3 = remove a, remove b, add x, add y; only remove a and add y were confirmed
    path, _, count = engine.merge_snapshot(
        snap, delta, (), KeyEncoding.TEXT, tmp_path / "out", [(0, 1), (3, 4)]
    )
    kept = sorted(r[0] for r in duckdb.execute(f"SELECT k FROM '{path}'").fetchall())
    assert kept == ["b", "c", "y"] and count == 3
    engine.close()
