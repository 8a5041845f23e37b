"""DuckDB errors in segops' own words: the file, the exact line, what to do, never a value.

DuckDB's messages carry its jargon, absolute temporary paths, line numbers that can be off
or vary between runs, and sometimes the offending line itself (member identifiers). None of
that text is shown. Instead, when DuckDB refuses a source, segops' exact reader for the
format reads the file again and names the first line that breaks the format's rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from segops._fs import NotRegularFileError
from segops._text import plural
from segops.engine import desired, sources
from segops.engine.sources.errors import UnreadableRow
from segops.engine.sources.objects import LocatedUnreadable
from segops.errors import Problem, SourceError
from segops.model import Destination, Source, SourceKind

MAX_REPORTED = 20  # bad rows named in one error; the count says how many there are in all
_FORMATS = {
    SourceKind.CSV: "CSV",
    SourceKind.NDJSON: "NDJSON",
    SourceKind.PARQUET: "Parquet",
    SourceKind.INLINE: "inline members",
    SourceKind.SQL: "a query's result",
}


def resource_problem(exc: duckdb.Error, memory_limit: str) -> str | None:
    """Return what ran out when `exc` is about the machine rather than the data, else None."""
    if isinstance(exc, duckdb.InterruptException):
        raise KeyboardInterrupt from None
    if isinstance(exc, duckdb.OutOfMemoryException):
        return (
            f"the member engine ran out of memory (engine.memory_limit is {memory_limit}): "
            "raise engine.memory_limit in segops.yaml"
        )
    if "No space left on device" in str(exc):
        return "the disk ran out of space while the member engine wrote its temporary files"
    return None


# Every row of a source for error reports: (file or object, line or row number, row).
LocatedRows = Callable[[], Iterator[tuple[str, int | None, dict[str, object]]]]


def local_rows(source: Source, root: Path) -> LocatedRows:
    """Return the located rows of a workspace file or an inline source."""
    name = source.name

    def rows() -> Iterator[tuple[str, int | None, dict[str, object]]]:
        for line, row in sources.iter_rows(source, root):
            yield name, line, row

    return rows


def source_problem(source: Source, rows: LocatedRows) -> Problem | None:
    """Return the first problem segops' exact reader finds in the source, or None."""
    file = source.name
    by_line = sources.location_word(source) == "line"
    try:
        for file, _, _ in rows():  # noqa: B007 - the last object read names a failure
            pass
    except UnreadableRow as error:
        return _located(file, error.message, error.line, by_line)
    except LocatedUnreadable as error:
        return _located(error.url, error.message, error.line, by_line)
    except SourceError as error:
        return error.problems[0]
    except NotRegularFileError as error:
        return Problem(file, f"is {error.kind}, not a regular file: a source must be a data file")
    except FileNotFoundError:
        return Problem(file, "was removed while segops was reading it")
    except OSError as error:
        return Problem(file, f"cannot be read: {error.strerror or _first_line(error)}")
    except (duckdb.Error, ValueError):  # the Parquet readers (DuckDB's, pyarrow's)
        return Problem(
            file, "is not a readable Parquet file (damaged, cut short, or in another format)"
        )
    return None


def _located(file: str, message: str, line: int | None, by_line: bool) -> Problem:
    if by_line:
        return Problem(file, message, line)
    return Problem(file, f"row {line}: {message}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def unreadable(source: Source, rows: LocatedRows) -> SourceError:
    """Return the error for a source DuckDB refused: the exact reader's finding, or a summary."""
    found = source_problem(source, rows)
    if found is not None:
        return SourceError([found])
    return SourceError(
        [
            Problem(
                source.name,
                f"cannot be read as {_FORMATS[source.kind]}, and segops' own reader finds no "
                "broken line in it: check that the file is complete and was not changed "
                "while segops read it",
            )
        ]
    )


def bad_row_problems(destination: Destination, rows: LocatedRows, invalid: int) -> list[Problem]:
    """Return the first bad rows of a source with their lines and why, then how many in all.

    A query's result has no stable row order: its bad rows are counted by reason instead.
    """
    source = destination.source
    file = source.name
    by_line = sources.location_word(source) == "line"
    problems: list[Problem] = []
    reasons: Counter[str] = Counter()
    try:
        for file, line, row in rows():
            reason = desired.row_problem(destination, row)
            if reason is None:
                continue
            if source.kind is SourceKind.SQL:
                reasons[reason] += 1
                continue
            suffix = "" if by_line else f" (row {line})"
            problems.append(Problem(file, reason + suffix, line if by_line else None))
            if len(problems) == MAX_REPORTED:
                break
    except (UnreadableRow, LocatedUnreadable) as error:  # the file changed since it was read
        problems.append(Problem(file, error.message, error.line if by_line else None))
    except (duckdb.Error, OSError, ValueError):  # a file replaced by a damaged one meanwhile
        problems.append(Problem(file, "changed while segops read it: run the command again"))
    for reason, count in sorted(reasons.items())[:MAX_REPORTED]:
        problems.append(Problem(file, f"{plural(count, 'row')}: {reason}"))
    shown = len(problems) if not reasons else sum(reasons.values())
    more = invalid - shown
    tail = f"{plural(invalid, 'bad row')} for destination {destination.address}"
    tail += f" ({more} more not listed)" if more > 0 else ""
    tail += "; fix them, or set `on_bad_rows: skip` on the source to leave them out"
    problems.append(Problem(destination.manifest, tail, source.line, "spec.source"))
    return problems
