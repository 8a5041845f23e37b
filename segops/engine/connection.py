"""DuckDB connections as segops opens them: no progress bar, and nothing written to stdout.

stdout carries only what the user asked for (a JSON or Markdown plan is parsed by scripts),
so every connection turns DuckDB's progress bar off as its first statement, and every query
runs with file descriptor 1 pointed at stderr (`quiet`): whatever DuckDB's C++ code prints
lands there, even if a setting turned the bar back on.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


def connect(
    memory_limit: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """Return a new in-memory DuckDB connection with segops' settings."""
    import duckdb  # here: a plan that skips every diff never imports it

    config: dict[str, str | bool | int | float | list[str]] = {}
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(config=config)
    try:
        with quiet():
            # Local settings cannot be passed to connect(): set them before any real query.
            con.execute("SET enable_progress_bar = false")
            con.execute("SET enable_progress_bar_print = false")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def quiet() -> Iterator[None]:
    """Point file descriptor 1 at stderr while DuckDB runs; Python's own stdout is flushed first.

    Nested and concurrent uses share one redirection, undone when the last one ends: two
    threads each saving and restoring fd 1 could otherwise leave it pointing at stderr.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = _redirect()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                os.dup2(_saved, 1)
                os.close(_saved)
                _saved = None


_lock = threading.Lock()
_depth = 0
_saved: int | None = None


def _redirect() -> int | None:
    """Point fd 1 at fd 2; return a copy of the old fd 1, or None when there is none."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no fd 1 (a closed or replaced stdout): nothing to protect
        return None
    try:
        os.dup2(2, 1)
    except OSError:
        os.close(saved)
        return None
    return saved


def arrow_reader(relation: duckdb.DuckDBPyRelation, rows: int) -> Any:
    """Return a relation's rows as a pyarrow RecordBatchReader of `rows` rows a batch.

    DuckDB 2 renamed the method; a relation's reader streams, where a DB-API cursor's
    copies the rows first (and, with preserve_insertion_order off, reorders them).
    """
    if hasattr(relation, "to_arrow_reader"):
        return relation.to_arrow_reader(rows)
    return relation.fetch_arrow_reader(rows)


def arrow_types(con: duckdb.DuckDBPyConnection, table: Any) -> dict[str, str]:
    """Return the DuckDB type of each column of a pyarrow table (its schema is enough).

    On a cursor of its own: DuckDB 2 registers nothing while a result is pending.
    """
    cursor = con.cursor()
    try:
        cursor.register("_segops_schema", table)
        rows = cursor.execute("DESCRIBE SELECT * FROM _segops_schema").fetchall()
    finally:
        cursor.close()
    return {str(r[0]): str(r[1]) for r in rows}
