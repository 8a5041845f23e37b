"""CSV sources: a header row, RFC 4180 quoting, UTF-8 with or without BOM, LF or CRLF.

Every column is text. Rows may end with LF or CRLF, mixed in one file: DuckDB's reader
wants one line ending per file, so a file that mixes them is read through a copy with LF
only (`normalised_copy`), made only after DuckDB refused the file (the usual file pays
nothing). The exact reader (`iter_rows`) reads the same bytes the same way, so the lines it
names are the lines of the file.

Blank lines at the end of a file are not rows: editors and exports often leave one. In a
one-column file DuckDB would read each as an empty value, so such a file is read through a
copy that stops at its last row (`trimmed_copy`); elsewhere DuckDB skips blank lines.
"""

from __future__ import annotations

import csv as _csv
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from segops._fs import open_regular
from segops._text import plural
from segops.engine.sources.errors import UnreadableRow
from segops.engine.sources.sql import quote_literal
from segops.errors import Problem, SourceError

_CHUNK = 1 << 20
# The longest row (with the line breaks of its quoted values) either reader accepts; set on
# DuckDB's reader too, so that both refuse the same rows.
MAX_ROW_BYTES = 2 << 20


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
        f"strict_mode=true, null_padding=false, encoding='utf-8', max_line_size={MAX_ROW_BYTES})"
    )


def header(path: Path, delimiter: str, display: str) -> list[str]:
    """Return the column names of the header row; raise SourceError when there is none.

    `display` is the workspace-relative path used in messages.
    """
    with open_regular(path) as handle:
        return header_of(handle, delimiter, display)


def header_of(handle: BinaryIO, delimiter: str, display: str) -> list[str]:
    """Return the column names of the header row read from `handle` (see `header`)."""
    first = handle.readline(_CHUNK)
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _error(display, "the header row is not UTF-8: save the file as UTF-8") from None
    names = next(_csv.reader([text.rstrip("\r\n")], delimiter=delimiter), [])
    if not any(n.strip() for n in names):
        raise _error(display, "no header row: the first line must name the columns")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise _error(display, f"the header names a column twice: {', '.join(duplicated)}")
    return names


def _error(display: str, message: str) -> SourceError:
    return SourceError([Problem(display, message, 1)])


def iter_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line, row) for every data row; raise UnreadableRow at the first broken line."""
    with open_regular(path) as handle:
        yield from iter_handle_rows(handle, delimiter)


def iter_handle_rows(handle: BinaryIO, delimiter: str) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line, row) for every data row read from a binary stream (see `iter_rows`)."""
    lines = _Lines(handle)
    yield from parse_rows(lines, delimiter, lines.sizes)


def parse_rows(
    lines: Iterable[str], delimiter: str, sizes: list[int] | None = None
) -> Iterator[tuple[int, dict[str, object]]]:
    """Parse CSV lines (LF-terminated text) into (line, row) pairs, as DuckDB reads them.

    Empty cells become None. An empty line is a row of one empty cell in a one-column file
    and is skipped otherwise; blank lines that end the file are never rows. `sizes` (bytes
    of each line, filled while reading) bounds rows.
    """
    if _csv.field_size_limit() < MAX_ROW_BYTES:  # 128 KiB by default; rows are bounded below
        _csv.field_size_limit(MAX_ROW_BYTES)
    reader = _csv.reader(lines, delimiter=delimiter, strict=True)
    start = 1
    try:
        names = next(reader, None)
        if names is None:
            return
        start = reader.line_num + 1
        blank: list[int] = []  # blank lines of a one-column file, until a row follows them
        for values in reader:
            if sizes and sum(sizes[start : reader.line_num + 1]) > MAX_ROW_BYTES:
                raise UnreadableRow(start, _TOO_LONG)
            if not values and len(names) == 1:
                blank.append(start)
            elif values:
                for line in blank:  # not trailing after all: each is an empty value
                    yield line, {names[0]: None}
                blank = []
                _check_width(values, names, start, delimiter)
                yield start, {k: v or None for k, v in zip(names, values, strict=True)}
            start = reader.line_num + 1
    except _csv.Error as error:
        raise UnreadableRow(start, _quoting_message(str(error), start, reader.line_num)) from None


def _check_width(values: list[str], names: list[str], line: int, delimiter: str) -> None:
    while len(values) > len(names) and values[-1] == "":
        values.pop()  # DuckDB ignores empty fields after the last column: so does segops
    if len(values) != len(names):
        raise UnreadableRow(
            line,
            f"has {plural(len(values), 'field')} where the header has {len(names)}: quote values "
            f"that contain the delimiter {delimiter!r}, and give every row every column",
        )


_TOO_LONG = f"starts a row longer than {MAX_ROW_BYTES >> 20} MiB: is a quote left open?"


def _quoting_message(error: str, start: int, end: int) -> str:
    if "field larger than field limit" in error:
        return _TOO_LONG
    if "unexpected end of data" in error:
        return "a quoted value that starts on this line is never closed: add the closing quote"
    if "new-line character" in error:
        return (
            "holds a carriage return (CR) that does not end the line: quote the value, or "
            "end lines with LF or CRLF"
        )
    where = "" if start == end else f" (the row runs to line {end})"
    return (
        "a quoted value is followed by more text before the delimiter: a quote inside a "
        'quoted value is written twice ("")' + where
    )


class _Lines:
    """The file's lines as text with LF endings; `sizes[n]` is the byte length of line n.

    Raises UnreadableRow on bad UTF-8, and on a line longer than any row may be, without
    reading the rest of that line.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.sizes = [0]

    def __iter__(self) -> Iterator[str]:
        number = 0
        while raw := self.handle.readline(MAX_ROW_BYTES + 1):
            number += 1
            self.sizes.append(len(raw))
            if len(raw) > MAX_ROW_BYTES:
                raise UnreadableRow(number, _TOO_LONG)
            data = raw[:-2] + b"\n" if raw.endswith(b"\r\n") else raw
            try:
                yield data.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise UnreadableRow(
                    number,
                    f"is not UTF-8 text (byte {error.start + 1} of the line): save it as UTF-8",
                ) from None


def has_crlf(path: Path) -> bool:
    """Return whether the file has any CRLF line ending (read only when DuckDB refused it)."""
    tail = b""
    with open_regular(path) as handle:
        while chunk := handle.read(_CHUNK):
            if b"\r\n" in tail + chunk[:1] or b"\r\n" in chunk:
                return True
            tail = chunk[-1:]
    return False


def trailing_blank_bytes(path: Path) -> int:
    """Return how many bytes of blank lines (LF or CRLF) end the file after its last row."""
    with open_regular(path) as handle:
        end = handle.seek(0, os.SEEK_END)
        position, blank = end, 0
        while position > 0:
            size = min(_CHUNK, position)
            position -= size
            handle.seek(position)
            chunk = handle.read(size)
            kept = chunk.rstrip(b"\r\n")
            if kept:
                cut = position + len(kept)
                # the last row keeps its own line ending; what follows it is blank lines
                ending = 2 if chunk[len(kept) : len(kept) + 2] == b"\r\n" else 1
                return max(0, end - cut - ending)
            blank = end - position
    return blank


def trimmed_copy(path: Path, out: Path, drop: int) -> Path:
    """Write `path` without its last `drop` bytes to `out` (private to this user); return it."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open_regular(path) as source, os.fdopen(fd, "wb") as target:
        left = source.seek(0, os.SEEK_END) - drop
        source.seek(0)
        while left > 0 and (chunk := source.read(min(_CHUNK, left))):
            target.write(chunk)
            left -= len(chunk)
    return out


def normalised_copy(path: Path, out: Path) -> Path:
    """Write `path` with every CRLF turned into LF to `out` (private to this user); return it."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open_regular(path) as source, os.fdopen(fd, "wb") as target:
        carry = b""
        while chunk := source.read(_CHUNK):
            data = carry + chunk
            carry = b"\r" if data.endswith(b"\r") else b""
            target.write(data[: len(data) - len(carry)].replace(b"\r\n", b"\n"))
        target.write(carry)
    return out
