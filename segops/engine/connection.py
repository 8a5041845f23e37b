"""DuckDB connections as segops opens them: no progress bar, and nothing written to stdout.

stdout carries only what the user asked for (a JSON or Markdown plan is parsed by scripts),
so every connection turns DuckDB's progress bar off as its first statement, and every query
runs with file descriptor 1 pointed at stderr (`quiet`): whatever DuckDB's C++ code prints
lands there, even if a setting turned the bar back on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


def connect(
    memory_limit: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """Return a new in-memory DuckDB connection with segops' settings."""
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
    """Point file descriptor 1 at stderr while DuckDB runs; Python's own stdout is flushed first."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no fd 1 (a closed or replaced stdout): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
    except OSError:
        os.close(saved)
        yield
        return
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
