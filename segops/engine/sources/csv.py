"""CSV sources: a header row, RFC 4180 quoting, UTF-8 with or without BOM, LF or CRLF."""

from __future__ import annotations

import csv as _csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from segops.engine.sources.sql import quote_literal
from segops.errors import Problem, SourceError


def relation_sql(path: Path, delimiter: str, display: str) -> str:
    """Return a strict read_csv over `path`: every column text, ragged rows and bad UTF-8 refused.

    The header is read here, not sniffed: a sniffer that sees a ragged row may guess another
    layout instead of reporting the row.
    """
    names = header(path, delimiter, display)
    columns = "{" + ", ".join(f"{quote_literal(n)}: 'VARCHAR'" for n in names) + "}"
    return (
        f"read_csv({quote_literal(str(path))}, header=true, auto_detect=false, "
        f"columns={columns}, delim={quote_literal(delimiter)}, quote='\"', escape='\"', "
        "strict_mode=true, null_padding=false, encoding='utf-8')"
    )


def header(path: Path, delimiter: str, display: str) -> list[str]:
    """Return the column names of the header row; raise SourceError when there is none.

    `display` is the workspace-relative path used in messages.
    """
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _error(display, "the header row is not UTF-8") from None
    names = next(_csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    if not any(n.strip() for n in names):
        raise _error(display, "no header row: the first line must name the columns")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise _error(display, f"the header names a column twice: {', '.join(duplicated)}")
    return names


def _error(display: str, message: str) -> SourceError:
    return SourceError([Problem(display, message, 1)])


def iter_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Yield (line, row) for every data row; `line` is where the row starts in the file."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from parse_rows(handle, delimiter)


def parse_rows(lines: Iterable[str], delimiter: str) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Parse CSV text into (line, row) pairs; empty cells become None as DuckDB reads them."""
    reader = _csv.reader(lines, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    start = reader.line_num + 1
    for values in reader:
        row: dict[str, str | None] = {
            k: (v if v != "" else None) for k, v in zip(header, values, strict=False)
        }
        yield start, row
        start = reader.line_num + 1
