"""CSV sources: a header row, RFC 4180 quoting, UTF-8 with or without BOM, LF or CRLF."""

from __future__ import annotations

import csv as _csv
from collections.abc import Iterable, Iterator
from pathlib import Path

from segops.sources._sql import quote_literal


def relation_sql(path: Path, delimiter: str) -> str:
    """Return a strict read_csv over `path`: every column text, ragged rows and bad UTF-8 refused."""
    return (
        f"read_csv({quote_literal(str(path))}, header=true, all_varchar=true, "
        f"delim={quote_literal(delimiter)}, quote='\"', escape='\"', strict_mode=true, "
        "null_padding=false, encoding='utf-8')"
    )


def iter_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Yield (line, row) for every data row; `line` is where the row starts in the file."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from parse_rows(handle, delimiter)


def parse_rows(
    lines: Iterable[str], delimiter: str
) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Parse CSV text into (line, row) pairs; empty cells become None as DuckDB reads them."""
    reader = _csv.reader(lines, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    start = reader.line_num + 1
    for values in reader:
        row: dict[str, str | None] = {k: (v if v != "" else None) for k, v in zip(header, values)}
        yield start, row
        start = reader.line_num + 1
