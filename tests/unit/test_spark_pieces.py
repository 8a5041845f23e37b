"""Pieces of a source for Spark's tasks: together, exactly the whole file's rows.

segops.engine.spark_tasks runs in Spark executors; here its functions run directly, over
files cut into pieces of a few bytes, and the rows of all pieces are compared with DuckDB's
reading of the whole file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from segops.engine import spark_tasks
from segops.engine.spark_tasks import UnsplittableError, byte_pieces, desired_batches, row_pieces

SCHEMA = pa.schema([("v", pa.string())])


# this module's own connection: DuckDB's default one is shared by every test of a worker
DB = duckdb.connect()


def _rows_of_pieces(pieces: list[spark_tasks.Piece]) -> list[str | None]:
    ids = pa.RecordBatch.from_arrays([pa.array(range(len(pieces)), pa.int64())], ["id"])
    rows: list[str | None] = []
    for batch in desired_batches(pieces, SCHEMA, "256MB", 1, iter([ids])):
        rows += batch.column(0).to_pylist()
    return rows


def _lines(rng: random.Random, count: int) -> list[str]:
    """Values of varied lengths, some empty (blank CSV lines), some multi-byte."""
    values = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.05:
            values.append("")
        elif kind < 0.1:
            values.append(f"é{i}✓" * rng.randint(1, 5))
        else:
            values.append(f"m{i}" * rng.randint(1, 12))
    return values


@pytest.mark.parametrize("piece_bytes", [1, 13, 400, 10**9])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_csv_pieces_hold_every_row_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece_bytes: int, trailing_newline: bool
) -> None:
    monkeypatch.setattr(spark_tasks, "PIECE_BYTES", piece_bytes)
    values = _lines(random.Random(piece_bytes), 80)
    path = tmp_path / "m.csv"
    body = "\n".join(["v", *values[:-1], "last"]) + ("\n" if trailing_newline else "")
    path.write_text(body, encoding="utf-8")
    sql = (
        f"SELECT v FROM read_csv('{path}', header=true, auto_detect=false, "
        "columns={'v': 'VARCHAR'}, delim=',', quote='\"', escape='\"', strict_mode=true)"
    )
    pieces = byte_pieces(sql, path, csv=True)
    assert (len(pieces) > 1) == (len(body.encode()) - len("v\n") >= piece_bytes)
    whole = [r[0] for r in DB.sql(sql).fetchall()]
    assert len(whole) == 80
    assert _rows_of_pieces(pieces) == whole  # in file order: pieces are read in order


def test_csv_pieces_equal_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_tasks, "PIECE_BYTES", 200)
    values = _lines(random.Random(3), 500)
    path = tmp_path / "m.csv"
    path.write_text("v\n" + "".join(f"{v}\n" for v in values), encoding="utf-8")
    sql = (
        f"SELECT v FROM read_csv('{path}', header=true, auto_detect=false, "
        "columns={'v': 'VARCHAR'}, delim=',', quote='\"', escape='\"', strict_mode=true)"
    )
    pieces = byte_pieces(sql, path, csv=True)
    assert len(pieces) > 20
    whole = [r[0] for r in DB.sql(sql).fetchall()]
    assert _rows_of_pieces(pieces) == whole
    assert len(whole) == 500


@pytest.mark.parametrize("text", ['v\na\n"b\nc"\nd\n', "v\r\na\r\nb\r\n", 'v\na\n"q"\n'])
def test_a_csv_piece_that_may_not_be_rows_stops_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """A quote or a carriage return: a line break may sit inside a field (or the file's
    header says so): the pieces refuse, and the engine reads the file as one piece."""
    monkeypatch.setattr(spark_tasks, "PIECE_BYTES", 2)
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode())
    columns = "{'v': 'VARCHAR'}"
    sql = f"SELECT v FROM read_csv('{path}', header=true, auto_detect=false, columns={columns})"
    pieces = byte_pieces(sql, path, csv=True)
    if len(pieces) == 1:  # the header itself told
        assert "\r" in text
        return
    with pytest.raises(UnsplittableError):
        _rows_of_pieces(pieces)


def test_ndjson_pieces_equal_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spark_tasks, "PIECE_BYTES", 40)
    rng = random.Random(9)
    path = tmp_path / "m.ndjson"
    lines = [json.dumps({"v": v, "note": 'a "quoted"\nline'}) for v in _lines(rng, 150)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sql = (
        f"SELECT v::VARCHAR AS v FROM read_json('{path}', format='newline_delimited', "
        "records=true, columns={'v': 'VARCHAR'})"
    )
    pieces = byte_pieces(sql, path, csv=False)
    assert len(pieces) > 50
    whole = [r[0] for r in DB.sql(sql).fetchall()]
    assert _rows_of_pieces(pieces) == whole


def test_parquet_pieces_are_runs_of_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spark_tasks, "PIECE_BYTES", 300)
    path = tmp_path / "m.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"v": [f"m{i}" for i in range(1000)]}), path, row_group_size=64)
    groups = DB.sql(
        "SELECT row_group_id, any_value(row_group_num_rows), any_value(row_group_bytes) "
        f"FROM parquet_metadata('{path}') GROUP BY ALL ORDER BY 1"
    ).fetchall()
    pieces = row_pieces(
        lambda over: f"SELECT v FROM {over}", path, [(int(r), int(b)) for _, r, b in groups]
    )
    assert 1 < len(pieces) <= len(groups)
    assert _rows_of_pieces(pieces) == [f"m{i}" for i in range(1000)]
