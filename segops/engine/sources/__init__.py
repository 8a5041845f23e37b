"""Sources: where a segment's members are read from, as DuckDB relations.

Each kind turns a `Source` into SQL text that the member engine runs (`relation_sql`)
and, for error reports only, a slow exact reader that yields rows with their line
numbers (`iter_rows`) and raises UnreadableRow at the first line that breaks the format.
The fast path never needs line numbers; the error path does.

Only regular files are read: a named pipe or a device would block every command. The
workspace loader checks each data file, and `data_path` checks it again right before a
read, since the file may have been replaced in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from segops._fs import NotRegularFileError, check_regular
from segops.engine.sources import csv, inline, ndjson, parquet
from segops.errors import Problem, SourceError
from segops.model import Source, SourceKind

# A source row for error reports: (line or row number, {column: value as the reader gives it}).
SourceRow = tuple[int, dict[str, object]]


def relation_sql(
    source: Source,
    root: Path,
    columns: Iterable[str] = (),
    table: str | None = None,
    replaced: Path | None = None,
) -> str:
    """Return SQL for a relation over the source.

    `columns` are the ones a destination reads (NDJSON declares only those); `table` names
    the temporary table holding inline members; `replaced` is a file to read instead of the
    source's own (a CSV with its line endings made uniform).
    """
    if source.kind is SourceKind.INLINE:
        assert table is not None, "inline sources are read from a table the engine creates"
        return inline.relation_sql(table)
    path = replaced or data_path(source, root)
    if source.kind is SourceKind.CSV:
        return csv.relation_sql(path, source.delimiter, source.path or "")
    if source.kind is SourceKind.NDJSON:
        return ndjson.relation_sql(path, columns)
    return parquet.relation_sql(path)


def iter_rows(source: Source, root: Path) -> Iterator[SourceRow]:
    """Yield every row with its line (row number for Parquet), for error reports.

    Raises:
        UnreadableRow: the first line that breaks the format's rules.
    """
    if source.kind is SourceKind.INLINE:
        return inline.iter_rows(source)
    path = data_path(source, root)
    if source.kind is SourceKind.CSV:
        return csv.iter_rows(path, source.delimiter)
    if source.kind is SourceKind.NDJSON:
        return ndjson.iter_rows(path)
    return parquet.iter_rows(path)


def location_word(source: Source) -> str:
    """Return how a row's position is named in messages: 'line' or 'row'."""
    return "row" if source.kind in (SourceKind.PARQUET, SourceKind.SQL) else "line"


def data_path(source: Source, root: Path) -> Path:
    """Return the source's data file; raise SourceError unless it is a regular file now."""
    assert source.path is not None
    path = root / source.path
    try:
        check_regular(path)
    except NotRegularFileError as error:
        message = f"is {error.kind}, not a regular file: a source must be a data file"
        raise SourceError([Problem(source.path, message)]) from None
    except OSError as error:
        raise SourceError([Problem(source.path, f"cannot be read: {error.strerror}")]) from None
    return path
