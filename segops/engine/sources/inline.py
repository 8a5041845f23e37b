"""Inline sources: members listed in the manifest itself, loaded into a temporary table.

Each cell is stored as JSON, like an NDJSON cell, so that a YAML number, boolean or object
stays what it is instead of becoming text; the table is filled with one INSERT of lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from segops.engine.sources.errors import UnreadableRow
from segops.engine.sources.sql import quote_ident
from segops.model import InlineObject, InlineValue, Source


def relation_sql(table: str) -> str:
    return f"(SELECT * EXCLUDE (_segops_line) FROM {quote_ident(table)})"


def columns(source: Source) -> list[str]:
    """Return every column named by any inline row, sorted."""
    return sorted({name for row in source.rows for name, _ in row})


def table_columns(source: Source) -> list[list[object]]:
    """Return the table's columns as lists: the YAML lines, then each column as JSON text.

    Raises:
        UnreadableRow: a string holds half a surrogate pair (YAML allows "\\ud800"), which
            no JSON reader takes.
    """
    names = columns(source)
    lines: list[object] = list(source.row_lines)
    out: list[list[object]] = [lines] + [[] for _ in names]
    for line, row in zip(source.row_lines, source.rows, strict=True):
        values = dict(row)
        for index, name in enumerate(names, start=1):
            out[index].append(_json(line, name, values.get(name)))
    return out


def iter_rows(source: Source) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line, row) for every member, objects as dicts, as the engine reads them."""
    for line, row in zip(source.row_lines, source.rows, strict=True):
        yield line, {k: _value(v) for k, v in row}


def _value(value: InlineValue) -> object:
    return json.loads(value.json) if isinstance(value, InlineObject) else value


def _json(line: int, column: str, value: InlineValue) -> str | None:
    if value is None:
        return None
    text = value.json if isinstance(value, InlineObject) else json.dumps(value, ensure_ascii=False)
    if not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise UnreadableRow(
            line,
            f"the value of {column!r} holds a \\u escape of half a surrogate pair, which is not "
            "text",
        )
    return text
