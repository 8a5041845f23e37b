"""Parquet sources: typed columnar files; identifiers are cast to text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb

from segops.engine.sources.sql import quote_literal


def relation_sql(path: Path) -> str:
    return f"read_parquet({quote_literal(str(path))})"


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Yield (row number, row) with every value cast to text, for error reports."""
    con = duckdb.connect()
    try:
        cursor = con.execute(f"SELECT * FROM {relation_sql(path)}")
        names = [d[0] for d in cursor.description or ()]
        number = 0
        while batch := cursor.fetchmany(10_000):
            for values in batch:
                number += 1
                yield (
                    number,
                    {
                        n: (None if v is None else str(v))
                        for n, v in zip(names, values, strict=True)
                    },
                )
    finally:
        con.close()
