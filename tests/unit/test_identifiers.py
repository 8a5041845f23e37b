"""The SQL rules (run by the engine on every row) and the Python rules (used to name bad
lines) must agree on every value."""

from __future__ import annotations

import duckdb
import pytest

from segops.engine import identifiers
from segops.model import Identifier, IdentifierKind

SHA = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
VALUES = [
    SHA,
    SHA.upper(),
    SHA[:-1],
    SHA + "0",
    SHA[:-1] + "g",
    SHA[:-1] + " ",
    "",
    None,
    "crm-42",
    "crm 42",
    "crm\t42",
    "crm\x0042",
    "crm\u00a042",
    "vec:123",
    "é" * 256,
    "é" * 257,
    "x" * 300,
]
KINDS = [
    Identifier(IdentifierKind.EMAIL_HASH, "v", "sha256"),
    Identifier(IdentifierKind.USER_ACCOUNT_ID, "v"),
    Identifier(IdentifierKind.EMAIL_HASH, "v", "md5"),
]


@pytest.mark.parametrize("identifier", KINDS, ids=lambda i: f"{i.kind}-{i.format}")
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_sql_and_python_rules_agree(identifier: Identifier, value: str | None) -> None:
    sql = identifiers.key_sql(identifier, "?::VARCHAR")
    (key,) = duckdb.execute(f"SELECT {sql}", [value] * sql.count("?")).fetchone() or (None,)
    problem = identifiers.identifier_problem(identifier, value)
    assert (key is None) == (problem is not None), (value, key, problem)


def test_hash_keys_are_stored_as_bytes_and_sent_as_lowercase_hex() -> None:
    ident = KINDS[0]
    sql = identifiers.key_sql(ident, "?::VARCHAR")
    (key,) = duckdb.execute(f"SELECT {sql}", [SHA] * sql.count("?")).fetchone() or (None,)
    assert isinstance(key, bytes) and len(key) == 32
    text = identifiers.key_text_sql(ident.encoding, "?::BLOB")
    assert duckdb.execute(f"SELECT {text}", [key]).fetchone() == (SHA,)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ('{"a": 1}', True),
        ("{}", True),
        ("[1]", False),
        ("nope", False),
        ('"s"', False),
        (None, True),
    ],
)
def test_data_bag_rules_agree(value: str | None, ok: bool) -> None:
    sql = identifiers.data_bag_sql("?::VARCHAR", "VARCHAR") or ""
    (bag,) = duckdb.execute(f"SELECT {sql}", [value] * sql.count("?")).fetchone() or (None,)
    assert (identifiers.data_bag_problem("c", value) is None) is ok
    if value is not None:
        assert (bag is not None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0", True),
        ("1700000000000", True),
        ("-1", False),
        (" 42 ", True),
        ("+5", False),
        ("1_000", False),
        ("1.5", False),
        ("soon", False),
    ],
)
def test_expiration_ts_rules_agree(value: str, ok: bool) -> None:
    sql = identifiers.expiration_ts_sql("?::VARCHAR", "VARCHAR") or ""
    (ts,) = duckdb.execute(f"SELECT {sql}", [value] * sql.count("?")).fetchone() or (None,)
    assert (ts is not None) is ok
    assert (identifiers.expiration_ts_problem("c", value) is None) is ok


def test_merge_keeps_only_confirmed_delta_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from segops.engine.duck import MemberEngine
    from segops.model import EngineConfig, KeyEncoding

    engine = MemberEngine(tmp_path, tmp_path / "work", EngineConfig(memory_limit="256MB"))
    snap = tmp_path / "snap.parquet"
    delta = tmp_path / "delta.parquet"
    duckdb.execute(f"COPY (SELECT * FROM (VALUES ('a'), ('b'), ('c')) t(k)) TO '{snap}'")
    rows = "('remove', 'a'), ('remove', 'b'), ('add', 'x'), ('add', 'y')"
    duckdb.execute(f"COPY (SELECT * FROM (VALUES {rows}) t(op, k)) TO '{delta}'")
    # rows 0..3 = remove a, remove b, add x, add y; only remove a and add y were confirmed
    path, _, count = engine.merge_snapshot(
        snap, delta, (), KeyEncoding.TEXT, tmp_path / "out", [(0, 1), (3, 4)]
    )
    kept = sorted(r[0] for r in duckdb.execute(f"SELECT k FROM '{path}'").fetchall())
    assert kept == ["b", "c", "y"] and count == 3
    engine.close()
