"""NDJSON sources: one JSON object per line.

Every column is declared JSON: a string, a number and an object stay apart per cell, instead
of a reader guessing one type for the column (a guess that turned strings into quoted JSON
text when some lines held numbers). Only the columns a destination reads are declared.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from segops._fs import open_regular
from segops.engine.sources.errors import UnreadableRow
from segops.engine.sources.sql import quote_literal

# A line longer than this is refused by the exact reader instead of being held in memory.
MAX_LINE_BYTES = 64 << 20


def relation_sql(path: Path, columns: Iterable[str]) -> str:
    """Return a read_json over `path` in newline-delimited mode, `columns` declared JSON."""
    declared = ", ".join(f"{quote_literal(c)}: 'JSON'" for c in sorted(set(columns)))
    return (
        f"read_json({quote_literal(str(path))}, format='newline_delimited', records=true, "
        f"columns={{{declared}}})"
    )


def keys_sql(path: Path) -> str:
    """Return SQL listing every key that some line's object has (one scan of the file)."""
    return (
        "SELECT DISTINCT unnest(json_keys(json)) AS name FROM "
        f"read_ndjson_objects({quote_literal(str(path))})"
    )


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line, row) for every non-blank line; raise UnreadableRow at the first bad line.

    A `null` line is a row with no values, as DuckDB reads it.
    """
    with open_regular(path) as handle:
        yield from iter_handle_rows(handle)


def iter_handle_rows(handle: BinaryIO) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line, row) for every non-blank line read from a binary stream."""
    yield from parse_lines(_lines(handle))


def parse_lines(lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, dict[str, object]]]:
    """Parse numbered raw lines (without their line ending) into (line, row) pairs."""
    for number, raw in lines:
        if not raw.strip(b" \t\r"):
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise UnreadableRow(
                number,
                f"is not UTF-8 text (byte {error.start + 1} of the line): save the file as UTF-8",
            ) from None
        yield number, _record(number, text)


def _record(number: int, text: str) -> dict[str, object]:
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as error:
        raise UnreadableRow(number, f"names the key {error.key!r} twice in one object") from None
    except RecursionError:
        raise UnreadableRow(number, "is nested too deeply to be read") from None
    except ValueError as error:
        raise UnreadableRow(number, _syntax_message(error)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnreadableRow(
            number, f"is {_kind(value)}, not a JSON object: every line holds one object"
        )
    if _has_surrogate(value):
        raise UnreadableRow(
            number,
            "holds a \\u escape of half a surrogate pair (\\ud800 to \\udfff alone), which is "
            "not text",
        )
    return value


def _syntax_message(error: ValueError) -> str:
    column = getattr(error, "colno", None)
    where = f" at character {column}" if column else ""
    reason = getattr(error, "msg", "invalid JSON")
    return f"is not valid JSON ({reason.lower()}{where}): every line holds one complete JSON object"


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return not value.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    return "a number"


def _lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yield (number, line without its LF) from a binary file, refusing overlong lines."""
    number = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise UnreadableRow(number, f"is longer than {MAX_LINE_BYTES >> 20} MiB")
        yield number, raw[:-1] if raw.endswith(b"\n") else raw
