"""Inline sources: members listed in the manifest itself, loaded into a temporary table."""

from __future__ import annotations

from collections.abc import Iterator

from segops.engine.sources.sql import quote_ident
from segops.model import Source


def relation_sql(table: str) -> str:
    return f"(SELECT * EXCLUDE (_segops_line) FROM {quote_ident(table)})"


def columns(source: Source) -> list[str]:
    """Return every column named by any inline row, sorted."""
    return sorted({name for row in source.rows for name, _ in row})


def table_rows(source: Source) -> list[tuple[object, ...]]:
    """Return rows for the temporary table: the YAML line, then each column as text."""
    names = columns(source)
    out: list[tuple[object, ...]] = []
    for line, row in zip(source.row_lines, source.rows, strict=True):
        values = dict(row)
        out.append((line, *(_as_text(values.get(n)) for n in names)))
    return out


def iter_rows(source: Source) -> Iterator[tuple[int, dict[str, str | None]]]:
    for line, row in zip(source.row_lines, source.rows, strict=True):
        yield line, {k: _as_text(v) for k, v in row}


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
