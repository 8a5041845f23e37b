"""Each format has one declared cell type, and a value of another type is a bad row, named.

An identifier is read as text: never as quoted JSON text, never a number turned into text
without a word. `integers: true` on the identifier (or MoEngage attribute) accepts whole
numbers; a MoEngage attribute of type double accepts numbers. Attribute columns (data_bag,
expiration_ts) follow the same rule.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.cli.sources import ACCOUNT, clean, manifest, moengage, sent, write_workspace
from tests.conftest import run

INTEGERS = ACCOUNT.replace("column: id}", "column: id, integers: true}")
NDJSON = "ndjson: {path: ../data/m.ndjson}"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("42", "user_account_id in column 'id' is a whole number, not text"),
        ("-7", "user_account_id in column 'id' is a whole number, not text"),
        ("1.5", "user_account_id in column 'id' is a number, not text"),
        ("1e400", "user_account_id in column 'id' is a number, not text"),
        ("true", "user_account_id in column 'id' is true/false, not text"),
        ('{"v": "crm-9"}', "user_account_id in column 'id' is an object, not text"),
        ('["crm-9"]', "user_account_id in column 'id' is a list, not text"),
        ("null", "empty user_account_id in column 'id'"),
        ('""', "empty user_account_id in column 'id'"),
        ('"crm 9"', "user_account_id in column 'id' must hold only letters"),
    ],
)
def test_an_ndjson_identifier_that_is_not_a_string_is_a_bad_row(
    workspace: Path, value: str, words: str
) -> None:
    data = f'{{"id": "crm-1"}}\n{{"id": {value}}}\n{{"id": "crm-3"}}\n'
    root = _ndjson(workspace, data)
    code, _, err = run(root, "plan")
    assert code == 1
    assert f"data/m.ndjson:2: {words}" in err
    assert "data/m.ndjson:1" not in err and "data/m.ndjson:3" not in err
    assert clean(err, "crm-9", "crm-1"), err


def test_strings_and_numbers_in_one_ndjson_column_are_sent_as_written(workspace: Path) -> None:
    data = '{"id": "crm-1"}\n{"id": 42}\n{"id": "x\\"y"}\n{"id": 18446744073709551615}\n'
    root = workspace_with(workspace, manifest(NDJSON, INTEGERS), {"data/m.ndjson": data})
    code, _, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    assert sent(root) == ["18446744073709551615", "42", "crm-1", 'x"y']  # no JSON quoting
    _write(root, "data/m.ndjson", '{"id": 2.0}\n{"id": 36893488147419103232}\n')
    code, _, err = run(root, "plan")
    assert code == 1
    assert "data/m.ndjson:1: user_account_id in column 'id' is a number, not text" in err
    assert "data/m.ndjson:2: user_account_id in column 'id' is a number, not text" in err


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("crm-1", True),
        ("42", False),
        ("0x10", False),  # YAML 1.1: 16
        ("yes", False),  # YAML 1.1: true
        ("off", False),
        ("1.5", False),
        (".nan", None),  # the schema refuses NaN
        ("{a: 1}", False),
        ("[1]", None),  # the schema refuses a list in a manifest
        ("'42'", True),
        ('"yes"', True),
    ],
)
def test_inline_yaml_values_keep_their_type(workspace: Path, value: str, ok: bool | None) -> None:
    root = workspace_with(workspace, manifest(f"members: [{{id: {value}}}]"), {})
    code, _, err = run(root, "validate")
    if ok is None:
        assert code == 1 and "segments/s.yaml" in err
        return
    assert (code == 0) is ok, err
    if not ok:
        assert "segments/s.yaml:6: user_account_id in column 'id' is " in err


def test_inline_whole_numbers_with_integers_are_sent_as_digits(workspace: Path) -> None:
    members = "members: [{id: crm-1}, {id: 42}, {id: 0x10}]"
    root = workspace_with(workspace, manifest(members, INTEGERS), {})
    assert run(root, "apply", "--auto-approve")[0] == 0
    assert sent(root) == ["16", "42", "crm-1"]  # 0x10 is YAML 1.1 for 16: quote such values


def _parquet(root: Path, select: str) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    duckdb.execute(f"COPY ({select}) TO '{root / 'data/m.parquet'}' (FORMAT parquet)")


@pytest.mark.parametrize(
    ("column", "integers", "words"),
    [
        ("'crm-' || i", False, None),
        ("i::BIGINT", False, "holds a whole number (BIGINT)"),
        ("i::BIGINT", True, None),
        ("i::UTINYINT", True, None),
        ("i::HUGEINT", True, "holds a number (DOUBLE)"),  # Parquet stores HUGEINT as DOUBLE
        ("i * 1.5", True, "holds a number (DECIMAL"),
        ("i::DOUBLE", False, "holds a number (DOUBLE)"),
        ("i % 2 = 0", True, "holds true/false (BOOLEAN)"),
        ("['crm-' || i]", False, "holds a list (VARCHAR[])"),
        ("{'v': 'crm-' || i}", False, "holds an object (STRUCT"),
        ("DATE '2024-01-01' + i::INTEGER", False, "holds a value of another type (DATE)"),
        ("('crm-' || i)::BLOB", False, "holds a value of another type (BLOB)"),
    ],
)
def test_a_parquet_identifier_column_of_a_refused_type_is_refused_as_a_whole(
    workspace: Path, column: str, integers: bool, words: str | None
) -> None:
    identifier = INTEGERS if integers else ACCOUNT
    root = workspace_with(workspace, manifest("parquet: {path: ../data/m.parquet}", identifier), {})
    _parquet(root, f"SELECT {column} AS id FROM range(1, 4) t(i)")
    for command in ("validate", "plan"):
        code, _, err = run(root, command)
        if words is None:
            assert code == 0, err
        else:
            assert code == 1
            assert f"identifier column 'id' of data/m.parquet {words}" in err
            assert "segments/s.yaml:" in err


def test_a_moengage_double_attribute_takes_numbers_from_every_format(workspace: Path) -> None:
    attribute = "{name: score, type: double, column: v}"
    data = '{"v": 1.5}\n{"v": 42}\n{"v": "-3.25"}\n{"v": "1,5"}\n{"v": true}\n{"v": NaN}\n'
    root = workspace_with(workspace, moengage(NDJSON, attribute), {"data/m.ndjson": data})
    code, _, err = run(root, "plan")
    assert code == 1
    assert "data/m.ndjson:4: attribute score in column 'v' is not a decimal number" in err
    assert "data/m.ndjson:5: attribute score in column 'v' is true/false" in err
    assert "data/m.ndjson:6: attribute score in column 'v' is not a decimal number" in err
    assert "data/m.ndjson:1:" not in err and "data/m.ndjson:3:" not in err
    _write(root, "data/m.ndjson", data.split('{"v": "1,5"}')[0])
    assert run(root, "plan")[0] == 0


def test_a_moengage_string_attribute_refuses_what_breaks_its_member_file(workspace: Path) -> None:
    attribute = "{name: email, column: v}"
    data = 'v\na@example.com\n"b,c@example.com"\nd#e@example.com\n"f""g@example.com"\n'
    root = workspace_with(
        workspace, moengage("csv: {path: ../data/m.csv}", attribute), {"data/m.csv": data}
    )
    code, _, err = run(root, "plan")
    assert code == 1
    for line, char in ((3, "U+002C COMMA"), (4, "U+0023 NUMBER SIGN"), (5, "U+0022 QUOTATION")):
        assert f"data/m.csv:{line}: attribute email in column 'v' must hold only" in err
        assert char in err
    assert clean(err, "example.com"), err


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("bag", '{"tier": "gold"}', None),
        ("bag", '"{\\"tier\\": \\"gold\\"}"', None),
        ("bag", '"[1]"', "data_bag in column 'bag' is not a JSON object"),
        ("bag", "[1]", "data_bag in column 'bag' is a list, not a JSON object"),
        ("bag", "7", "data_bag in column 'bag' is a whole number, not a JSON object"),
        ("bag", "true", "data_bag in column 'bag' is true/false, not a JSON object"),
        ("ts", "1767225600000", None),
        ("ts", '"1767225600000"', None),
        ("ts", "1.7e12", "expiration_ts in column 'ts' is not a non-negative integer"),
        ("ts", "-1", "expiration_ts in column 'ts' is not a non-negative integer"),
        ("ts", "false", "expiration_ts in column 'ts' is not a non-negative integer"),
        ("ts", '{"at": 1}', "expiration_ts in column 'ts' is not a non-negative integer"),
    ],
)
def test_ndjson_attribute_cells_are_typed_too(
    workspace: Path, column: str, value: str, words: str | None
) -> None:
    extra = "      data_bag: {column: bag}\n      expiration_ts: {column: ts}\n"
    cells = {"bag": "{}", "ts": "0", column: value}
    data = f'{{"id": "crm-1", "bag": {cells["bag"]}, "ts": {cells["ts"]}}}\n'
    root = workspace_with(workspace, manifest(NDJSON, extra=extra), {"data/m.ndjson": data})
    code, _, err = run(root, "plan")
    if words is None:
        assert code == 0, err
    else:
        assert code == 1 and f"data/m.ndjson:1: {words}" in err


def test_an_ndjson_data_bag_object_is_sent_as_written(workspace: Path) -> None:
    extra = "      data_bag: {column: bag}\n"
    data = '{"id": "crm-1", "bag": {"b": 1, "a": [true]}}\n{"id": "crm-2", "bag": {"c": 2}}\n'
    root = workspace_with(workspace, manifest(NDJSON, extra=extra), {"data/m.ndjson": data})
    assert run(root, "apply", "--auto-approve")[0] == 0
    # exactly each member's own keys: no key of another line added as null
    assert sent(root, "data_bag") == ['{"b":1,"a":[true]}', '{"c":2}']


@pytest.mark.parametrize(
    ("role", "column", "words"),
    [
        ("data_bag", "['a']", "data_bag column 'bag' of data/m.parquet holds a list"),
        ("data_bag", "1", "data_bag column 'bag' of data/m.parquet holds a whole number"),
        ("expiration_ts", "1.5::DOUBLE", "expiration_ts column 'ts' of data/m.parquet holds a"),
        ("expiration_ts", "TIMESTAMP '2024-01-01'", "expiration_ts column 'ts' of data/m.parquet"),
    ],
)
def test_a_parquet_attribute_column_of_a_refused_type_is_refused(
    workspace: Path, role: str, column: str, words: str
) -> None:
    name = "bag" if role == "data_bag" else "ts"
    extra = f"      {role}: {{column: {name}}}\n"
    root = workspace_with(
        workspace, manifest("parquet: {path: ../data/m.parquet}", extra=extra), {}
    )
    _parquet(root, f"SELECT 'crm-' || i AS id, {column} AS {name} FROM range(3) t(i)")
    code, _, err = run(root, "validate")
    assert code == 1 and words in err


def test_parquet_struct_bags_and_integer_timestamps_are_accepted(workspace: Path) -> None:
    extra = "      data_bag: {column: bag}\n      expiration_ts: {column: ts}\n"
    root = workspace_with(
        workspace, manifest("parquet: {path: ../data/m.parquet}", extra=extra), {}
    )
    _parquet(
        root,
        "SELECT 'crm-' || i AS id, {'n': i} AS bag, 1700000000000 + i AS ts FROM range(3) t(i)",
    )
    assert run(root, "apply", "--auto-approve")[0] == 0
    assert sent(root, "data_bag") == ['{"n":0}', '{"n":1}', '{"n":2}']


def _ndjson(root: Path, data: str) -> Path:
    return workspace_with(root, manifest(NDJSON), {"data/m.ndjson": data})


def workspace_with(root: Path, text: str, data: dict[str, str]) -> Path:
    return write_workspace(root, text, {k: v.encode() for k, v in data.items()})


def _write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text)


@pytest.mark.parametrize(
    ("bag", "ts", "words"),
    [
        ("{tier: gold}", "1767225600000", None),
        ('\'{"tier": "gold"}\'', "'1767225600000'", None),
        ("7", "0", "data_bag in column 'bag' is a whole number, not a JSON object"),
        ("yes", "0", "data_bag in column 'bag' is true/false, not a JSON object"),
        ("'[1]'", "0", "data_bag in column 'bag' is not a JSON object"),
        ("{}", "1.5", "expiration_ts in column 'ts' is not a non-negative integer"),
        ("{}", "-1", "expiration_ts in column 'ts' is not a non-negative integer"),
        ("{}", "no", "expiration_ts in column 'ts' is not a non-negative integer"),
        ("{}", "{at: 1}", "expiration_ts in column 'ts' is not a non-negative integer"),
    ],
)
def test_inline_attribute_cells_keep_their_yaml_type(
    workspace: Path, bag: str, ts: str, words: str | None
) -> None:
    extra = "      data_bag: {column: bag}\n      expiration_ts: {column: ts}\n"
    members = f"members: [{{id: crm-1}}, {{id: crm-2, bag: {bag}, ts: {ts}}}]"
    root = write_workspace(workspace, manifest(members, extra=extra))
    code, _, err = run(root, "validate")
    if words is None:
        assert code == 0, err
    else:
        assert code == 1 and f"segments/s.yaml:6: {words}" in err


def test_a_bad_parquet_row_is_named_by_its_row_number(workspace: Path) -> None:
    root = write_workspace(workspace, manifest("parquet: {path: ../data/m.parquet}"))
    _parquet(root, "SELECT * FROM (VALUES ('crm-1'), ('crm\u200d2'), ('crm-3'), ('')) t(id)")
    code, _, err = run(root, "plan")
    assert code == 1
    assert "data/m.parquet: user_account_id in column 'id' must hold only" in err
    assert "(row 2)" in err and "(row 4)" in err and "(row 1)" not in err
    assert clean(err, "crm"), err
