"""Exact readers: they read what DuckDB reads, and name the exact line DuckDB refuses.

For valid files, generated at random, the exact reader's rows equal DuckDB's. For broken
files (many kinds per format), DuckDB refuses the file and the exact reader names the line
that a person must fix, in words that hold none of the file's content.
"""

from __future__ import annotations

import csv as _csv
import io
import json
import random
from pathlib import Path

import duckdb
import pytest

from segops.engine.sources import csv, ndjson
from segops.engine.sources.errors import UnreadableRow

SECRET = "secret-member-77"  # a member value that no message may show


def duck_rows(sql: str) -> list[tuple[object, ...]]:
    return duckdb.connect().execute(f"SELECT * FROM {sql}").fetchall()


def exact_csv(path: Path, delimiter: str = ",") -> list[tuple[object, ...]]:
    return [tuple(row.values()) for _, row in csv.iter_rows(path, delimiter)]


def random_csv(rng: random.Random, columns: int, rows: int, ending: str, bom: bool) -> str:
    pool = ["a", "b,c", 'say "hi"', "multi\nline", "é名", "", " ", "x;y", '{"k": 1}', SECRET]
    out = io.StringIO()
    writer = _csv.writer(out, lineterminator=ending)
    writer.writerow([f"c{i}" for i in range(columns)])
    for _ in range(rows):
        cells = [rng.choice(pool) for _ in range(columns)]
        writer.writerow(cells if any(cells) or columns == 1 else ["z", *cells[1:]])
    return ("\ufeff" if bom else "") + out.getvalue()


def test_empty_fields_after_the_last_column_are_ignored_by_both_readers(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b'id,b\nx,1,\ny,2,,""\nz,\n')
    assert exact_csv(path) == duck_rows(csv.relation_sql(path, ",", "m.csv"))
    assert exact_csv(path) == [("x", "1"), ("y", "2"), ("z", None)]


@pytest.mark.parametrize("seed", range(12))
def test_exact_csv_reader_reads_what_duckdb_reads(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    columns = rng.randint(1, 4)
    text = random_csv(rng, columns, rng.randint(0, 40), rng.choice(["\n", "\r\n"]), seed % 2 == 0)
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode())
    assert exact_csv(path) == duck_rows(csv.relation_sql(path, ",", "m.csv"))


@pytest.mark.parametrize("seed", range(12))
def test_mixed_line_endings_read_as_the_same_rows_as_lf(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    text = random_csv(rng, rng.randint(1, 3), rng.randint(2, 30), "\n", seed % 3 == 0)
    lines = text.split("\n")
    mixed = "".join(line + rng.choice(["\n", "\r\n"]) for line in lines[:-1]) + lines[-1]
    lf, crlf = tmp_path / "lf.csv", tmp_path / "mixed.csv"
    lf.write_bytes(text.encode())
    crlf.write_bytes(mixed.encode())
    copy = csv.normalised_copy(crlf, tmp_path / "copy.csv")
    expected = duck_rows(csv.relation_sql(lf, ",", "lf.csv"))
    assert duck_rows(csv.relation_sql(copy, ",", "copy.csv")) == expected
    assert exact_csv(crlf) == expected
    assert csv.has_crlf(crlf) == ("\r\n" in mixed)
    assert (copy.stat().st_mode & 0o077) == 0  # the copy holds members: private


BROKEN_CSV = {
    "ragged-short": (b"id,b\nx,1\ny\nz,3\n", 3, "has 1 field where the header has 2"),
    "ragged-long": (b"id,b\nx,1\nz,3,4\n", 3, "has 3 fields where the header has 2"),
    "trailing-space-field": (b"id\nx\nsecret-member-77, \n", 3, "has 2 fields"),
    "latin-1": (b"id\nok\n\xe9t\xe9\n", 3, "is not UTF-8"),
    "bad-utf8-late": (b"id\n" + b"ok\n" * 50 + b"x\xff\n", 52, "is not UTF-8"),
    "unclosed-quote": (b'id,b\nx,1\n"secret-member-77,2\ny,3\n', 3, "never closed"),
    "text-after-quote": (b'id,b\nx,1\n"secret-member-77"x,2\n', 3, "quote inside a quoted"),
    "lone-cr": (b"id,b\nx,1\rsecret-member-77,2\n", 2, "carriage return"),
    "multiline-then-ragged": (b'id,b\n"a\nb",1\nc\n', 4, "has 1 field"),
    "huge-row": (b"id,b\nx,1\n" + b"y" * 3_000_000 + b",2\n", 3, "longer than 2 MiB"),
    "huge-quoted-row": (
        b'id,b\nx,1\n"' + (b"y" * 999 + b"\n") * 3000 + b'",2\n',
        3,
        "longer than 2 MiB",
    ),
    "unclosed-quote-late": (b"id\n" + b"ok\n" * 1000 + b'"open\n' + b"x\n" * 10, 1002, "never"),
}


@pytest.mark.parametrize("case", BROKEN_CSV.values(), ids=BROKEN_CSV.keys())
def test_broken_csv_is_refused_at_the_exact_line(
    tmp_path: Path, case: tuple[bytes, int, str]
) -> None:
    content, line, words = case
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    with pytest.raises(duckdb.Error):
        duck_rows(csv.relation_sql(path, ",", "m.csv"))
    with pytest.raises(UnreadableRow) as raised:
        exact_csv(path)
    assert raised.value.line == line
    assert words in raised.value.message
    assert SECRET not in raised.value.message and "\xe9" not in raised.value.message


@pytest.mark.parametrize("seed", range(8))
def test_exact_ndjson_reader_reads_what_duckdb_reads(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    pool: list[object] = ["a", "", "é名", 42, -1, 2**70, 1.5, True, None, {"k": [1]}, [1, "x"]]
    lines = []
    for _ in range(rng.randint(0, 30)):
        record = {f"c{i}": rng.choice(pool) for i in range(3) if rng.random() < 0.8}
        lines.append(json.dumps(record) if rng.random() < 0.9 else rng.choice(["", "  ", "null"]))
    path = tmp_path / "m.ndjson"
    path.write_bytes(("\r\n" if seed % 2 else "\n").join(lines).encode())
    sql = ndjson.relation_sql(path, ["c0", "c1", "c2"])
    cells = "json_type(c0), c0->>'$', json_type(c1), c1->>'$', json_type(c2), c2->>'$'"
    duck = duckdb.connect().execute(f"SELECT {cells} FROM {sql}").fetchall()
    exact = []
    for _, row in ndjson.iter_rows(path):
        exact.append(tuple(x for c in ("c0", "c1", "c2") for x in _json_cell(row.get(c))))
    assert exact == duck


def _json_cell(value: object) -> tuple[str | None, str | None]:
    """Return (json_type, ->>'$') as DuckDB gives them for a cell of this Python value."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return "BOOLEAN", json.dumps(value)
    if isinstance(value, int):
        return ("UBIGINT" if 0 <= value < 2**64 else "DOUBLE" if value >= 2**64 else "BIGINT"), str(
            value
        )
    if isinstance(value, float):
        return "DOUBLE", repr(value)
    if isinstance(value, str):
        return "VARCHAR", value
    return ("OBJECT" if isinstance(value, dict) else "ARRAY"), json.dumps(
        value, separators=(",", ":")
    )


BROKEN_NDJSON = {
    "truncated": (b'{"id":"a"}\n{"id":"secret-member-77"\n{"id":"c"}\n', 2, "not valid JSON"),
    "truncated-last": (b'{"id":"a"}\n{"id":"secret-member-77', 2, "not valid JSON"),
    "array": (b'{"id":"a"}\n["secret-member-77"]\n', 2, "is a list, not a JSON object"),
    "number": (b'{"id":"a"}\n\n77\n', 3, "is a number, not a JSON object"),
    "string": (b'{"id":"a"}\n"secret-member-77"\n', 2, "is a string, not a JSON object"),
    "boolean": (b'{"id":"a"}\ntrue\n', 2, "is true/false"),
    "bad-utf8": (b'{"id":"a"}\n{"id":"\xff"}\n', 2, "is not UTF-8"),
    "raw-control": (b'{"id":"a"}\n{"id":"secret\tmember"}\n', 2, "not valid JSON"),
    "embedded-nul": (b'{"id":"a"}\n{"id":"x\x00y"}\n', 2, "not valid JSON"),
    "lone-surrogate": (b'{"id":"a"}\n{"id":"\\ud800"}\n', 2, "half a surrogate pair"),
    "duplicate-key": (b'{"id":"a"}\n{"id":"b","id":"secret-member-77"}\n', 2, "names the key 'id'"),
    "two-objects": (b'{"id":"a"} {"id":"secret-member-77"}\n', 1, "not valid JSON"),
    "trailing-comma": (b'{"id":"a"},\n', 1, "not valid JSON"),
    "comment": (b'{"id":"a"} // secret-member-77\n', 1, "not valid JSON"),
    "multi-line": (b'{"id":"a"}\n{"id":\n"secret-member-77"}\n', 2, "not valid JSON"),
    "bom-on-line-2": (b'{"id":"a"}\n\xef\xbb\xbf{"id":"b"}\n', 2, "not valid JSON"),
    "crlf-then-broken": (b'{"id":"a"}\r\n{"id":"b"}\r\n{"id":}\r\n', 3, "not valid JSON"),
}


@pytest.mark.parametrize("case", BROKEN_NDJSON.values(), ids=BROKEN_NDJSON.keys())
def test_broken_ndjson_is_refused_at_the_exact_line(
    tmp_path: Path, case: tuple[bytes, int, str]
) -> None:
    content, line, words = case
    path = tmp_path / "m.ndjson"
    path.write_bytes(content)
    with pytest.raises(duckdb.Error):
        duck_rows(ndjson.relation_sql(path, ["id"]))
    with pytest.raises(UnreadableRow) as raised:
        list(ndjson.iter_rows(path))
    assert raised.value.line == line
    assert words in raised.value.message
    assert "secret" not in raised.value.message


def test_an_overlong_ndjson_line_is_refused_without_reading_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ndjson, "MAX_LINE_BYTES", 1024)
    path = tmp_path / "m.ndjson"
    path.write_bytes(b'{"id":"a"}\n{"id":"' + b"x" * 5000 + b'"}\n')
    with pytest.raises(UnreadableRow) as raised:
        list(ndjson.iter_rows(path))
    assert raised.value.line == 2 and "longer than" in raised.value.message


TRAILING = {
    "lf": (b"id\nx\ny\n\n", 1),
    "lf-many": (b"id\nx\ny\n\n\n\n", 3),
    "crlf": (b"id\r\nx\r\ny\r\n\r\n", 2),
    "no-final-newline": (b"id\nx\ny", 0),
    "one-final-newline": (b"id\nx\ny\n", 0),
    "header-only-then-blank": (b"id\n\n", 1),
}


@pytest.mark.parametrize("case", TRAILING.values(), ids=TRAILING.keys())
def test_blank_lines_that_end_a_csv_are_not_rows(tmp_path: Path, case: tuple[bytes, int]) -> None:
    content, blank = case
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    assert csv.trailing_blank_bytes(path) == blank
    rows = exact_csv(path)
    copy = csv.trimmed_copy(path, tmp_path / "copy.csv", blank)
    assert duck_rows(csv.relation_sql(copy, ",", "copy.csv")) == rows
    assert rows == [("x",), ("y",)][: len(rows)] and None not in {r[0] for r in rows}
    assert (copy.stat().st_mode & 0o077) == 0


def test_a_blank_line_inside_a_one_column_csv_is_still_an_empty_value(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"id\nx\n\n\ny\n\n")
    assert list(csv.iter_rows(path, ",")) == [
        (2, {"id": "x"}),
        (3, {"id": None}),
        (4, {"id": None}),
        (5, {"id": "y"}),
    ]
