"""The engine gives a delta as Arrow batches with the same rows, in file order, as `read_delta`."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from segops.engine import duck
from segops.engine.duck import DuckDBEngine
from segops.errors import EngineError, StateError
from segops.model import EngineConfig, KeyEncoding

ROWS = 130_000  # more than two of the engine's batches (50,000 rows)


def delta(tmp_path: Path, *, attributes: bool) -> Path:
    """Write a delta whose file order is not the order of its keys (removes, then adds)."""
    path = tmp_path / "delta.parquet"
    attrs = (
        ", CASE WHEN i % 3 = 0 THEN NULL ELSE '{\"n\":' || i || '}' END AS data_bag, "
        "CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1000 END::BIGINT AS expiration_ts"
        if attributes
        else ""
    )
    duckdb.execute(
        f"COPY (SELECT CASE WHEN i < 1000 THEN 'remove' ELSE 'add' END AS op, "
        f"unhex(sha256(i::VARCHAR)) AS k{attrs} FROM range({ROWS}) t(i) "
        f"ORDER BY i < 1000 DESC, hash(i)) TO '{path}' (ROW_GROUP_SIZE 10000)"
    ).fetchall()  # a COPY's result left pending blocks DuckDB's default connection
    return path


def batch_rows(engine: DuckDBEngine, path: Path) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = []
    for batch in engine.delta_batches(path, KeyEncoding.HEX):
        assert batch.schema.names == ["op", "key", "data_bag", "expiration_ts", "index"]
        found += zip(*(batch.column(i).to_pylist() for i in range(5)), strict=True)
    return found


@pytest.mark.parametrize("attributes", [True, False])
@pytest.mark.parametrize("small", [True, False], ids=["read by pyarrow", "in scan order"])
def test_batches_hold_the_rows_of_read_delta_in_file_order(
    tmp_path: Path, attributes: bool, small: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duck, "SMALL_INPUT_BYTES", 1 << 40 if small else 0)
    path = delta(tmp_path, attributes=attributes)
    engine = DuckDBEngine(tmp_path, tmp_path / "work", EngineConfig())
    try:
        rows = [
            (r.op, r.key, r.data_bag, r.expiration_ts, r.index)
            for r in engine.read_delta(path, KeyEncoding.HEX)
        ]
        assert [r[4] for r in rows] == list(range(ROWS))
        assert rows[999][0] == "remove" and rows[1000][0] == "add"
        assert batch_rows(engine, path) == rows
        setting = "SELECT current_setting('preserve_insertion_order')"
        assert engine.con.execute(setting).fetchone() == (False,), "the engine's setting is back"
        assert any(r[2] for r in rows) is attributes
    finally:
        engine.close()


def test_a_small_delta_of_text_keys_is_read_as_the_engine_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "delta.parquet"
    duckdb.execute(
        f"COPY (SELECT CASE WHEN i < 3 THEN 'remove' ELSE 'add' END AS op, 'crm-' || i AS k "
        f"FROM range(10) t(i)) TO '{path}'"
    ).fetchall()
    engine = DuckDBEngine(tmp_path, tmp_path / "work", EngineConfig())
    try:
        rows = [
            (r.op, r.key, r.data_bag, r.expiration_ts, r.index)
            for r in engine.read_delta(path, KeyEncoding.TEXT)
        ]
        found: list[tuple[object, ...]] = []
        for batch in engine.delta_batches(path, KeyEncoding.TEXT):
            found += zip(*(batch.column(i).to_pylist() for i in range(5)), strict=True)
        assert found == rows and rows[3] == ("add", "crm-3", None, None, 3)
    finally:
        engine.close()


def test_a_damaged_small_delta_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "delta.parquet"
    path.write_bytes(b"PAR1 not a parquet file")
    engine = DuckDBEngine(tmp_path, tmp_path / "work", EngineConfig())
    try:
        with pytest.raises(StateError, match="delta.parquet"):
            list(engine.delta_batches(path, KeyEncoding.HEX))
    finally:
        engine.close()


def test_rows_out_of_file_order_are_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duck, "SMALL_INPUT_BYTES", 0)
    path = delta(tmp_path, attributes=False)
    engine = DuckDBEngine(tmp_path, tmp_path / "work", EngineConfig())
    real = engine._delta_sql
    # Rows in another order than the file's, as DuckDB's DB-API reader gave them.
    engine._delta_sql = lambda *a, **k: real(*a, **k) + " ORDER BY key"  # type: ignore[method-assign]
    try:
        with pytest.raises(EngineError, match="out of file order"):
            batch_rows(engine, path)
    finally:
        engine.close()


@pytest.mark.parametrize("attributes", [True, False])
def test_a_large_files_columns_read_by_duckdb_are_the_footers(
    tmp_path: Path, attributes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large snapshot's columns come from DuckDB while pyarrow is not imported: the same
    names, in the same order, as pyarrow reads from the footer."""
    path = delta(tmp_path, attributes=attributes)
    footer = duck.deltas.parquet_columns(path)
    assert footer == ["op", "k", *(["data_bag", "expiration_ts"] if attributes else [])]
    engine = DuckDBEngine(tmp_path, tmp_path / "work", EngineConfig())
    try:
        monkeypatch.setattr(duck, "SMALL_INPUT_BYTES", 0)
        monkeypatch.delitem(duck.sys.modules, "pyarrow")
        monkeypatch.setattr(duck.deltas, "parquet_columns", None)  # not asked
        assert engine._parquet_columns(path) == footer
    finally:
        engine.close()
