"""Sources: where a segment's members are read from, as DuckDB relations.

Each kind turns a `Source` into SQL text that the member engine runs (`relation_sql`)
and, for error reports only, a slow exact reader that yields rows with their line
numbers (`iter_rows`). The fast path never needs line numbers; the error path does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from segops.engine.sources import csv, inline, ndjson, parquet
from segops.model import Source, SourceKind

# A source row for error reports: (line or row number, {column: value as text or None}).
SourceRow = tuple[int, dict[str, str | None]]


def relation_sql(source: Source, root: Path, table: str | None = None) -> str:
    """Return SQL for a relation over the source, every column typed as DuckDB infers it.

    `table` names the temporary table that holds inline members (created by the engine).
    """
    if source.kind is SourceKind.CSV:
        return csv.relation_sql(_path(source, root), source.delimiter, source.path or "")
    if source.kind is SourceKind.NDJSON:
        return ndjson.relation_sql(_path(source, root))
    if source.kind is SourceKind.PARQUET:
        return parquet.relation_sql(_path(source, root))
    assert table is not None, "inline sources are read from a table the engine creates"
    return inline.relation_sql(table)


def iter_rows(source: Source, root: Path) -> Iterator[SourceRow]:
    """Yield every row with its line (row number for Parquet), for error reports."""
    if source.kind is SourceKind.CSV:
        return csv.iter_rows(_path(source, root), source.delimiter)
    if source.kind is SourceKind.NDJSON:
        return ndjson.iter_rows(_path(source, root))
    if source.kind is SourceKind.PARQUET:
        return parquet.iter_rows(_path(source, root))
    return inline.iter_rows(source)


def location_word(source: Source) -> str:
    """Return how a row's position is named in messages: 'line' or 'row'."""
    return "row" if source.kind is SourceKind.PARQUET else "line"


def _path(source: Source, root: Path) -> Path:
    assert source.path is not None
    return root / source.path
