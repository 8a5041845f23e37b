"""Parquet sources: typed columnar files; each column keeps its type (see segops.engine.cells)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from segops.engine.connection import connect, quiet
from segops.engine.sources.sql import quote_literal


def relation_sql(path: Path) -> str:
    return f"read_parquet({quote_literal(str(path))})"


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (row number, row) with every value as DuckDB gives it to Python."""
    con = connect()
    try:
        with quiet():
            cursor = con.execute(f"SELECT * FROM {relation_sql(path)}")
        names = [d[0] for d in cursor.description or ()]
        number = 0
        while True:
            with quiet():
                batch = cursor.fetchmany(10_000)
            if not batch:
                return
            for values in batch:
                number += 1
                yield number, dict(zip(names, values, strict=True))
    finally:
        con.close()
