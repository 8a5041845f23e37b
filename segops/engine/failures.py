"""DuckDB errors in segops' own words: the file, the exact line, what to do, never a value.

DuckDB's messages carry its jargon, absolute temporary paths, line numbers that can be off
or vary between runs, and sometimes the offending line itself (member identifiers). None of
that text is shown. Instead, when DuckDB refuses a source, segops' exact reader for the
format reads the file again and names the first line that breaks the format's rules.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from segops._fs import NotRegularFileError
from segops._text import plural
from segops.engine import desired, sources
from segops.engine.sources.errors import UnreadableRow
from segops.errors import Problem, SourceError
from segops.model import Destination, Source, SourceKind

MAX_REPORTED = 20  # bad rows named in one error; the count says how many there are in all
_FORMATS = {
    SourceKind.CSV: "CSV",
    SourceKind.NDJSON: "NDJSON",
    SourceKind.PARQUET: "Parquet",
    SourceKind.INLINE: "inline members",
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


def source_problem(source: Source, root: Path) -> Problem | None:
    """Return the first problem segops' exact reader finds in the source, or None."""
    file = source.path or source.manifest
    try:
        for _ in sources.iter_rows(source, root):
            pass
    except UnreadableRow as error:
        if sources.location_word(source) == "line":
            return Problem(file, error.message, error.line)
        return Problem(file, f"row {error.line}: {error.message}")
    except NotRegularFileError as error:
        return Problem(file, f"is {error.kind}, not a regular file: a source must be a data file")
    except FileNotFoundError:
        return Problem(file, "was removed while segops was reading it")
    except OSError as error:
        return Problem(file, f"cannot be read: {error.strerror}")
    except duckdb.Error:  # only the Parquet reader is DuckDB's own
        return Problem(
            file, "is not a readable Parquet file (damaged, cut short, or in another format)"
        )
    return None


def unreadable(source: Source, root: Path) -> SourceError:
    """Return the error for a source DuckDB refused: the exact reader's finding, or a summary."""
    found = source_problem(source, root)
    if found is not None:
        return SourceError([found])
    file = source.path or source.manifest
    return SourceError(
        [
            Problem(
                file,
                f"cannot be read as {_FORMATS[source.kind]}, and segops' own reader finds no "
                "broken line in it: check that the file is complete and was not changed "
                "while segops read it",
            )
        ]
    )


def bad_row_problems(destination: Destination, root: Path, invalid: int) -> list[Problem]:
    """Return the first bad rows of a source with their lines and why, then how many in all."""
    source = destination.source
    file = source.path or source.manifest
    by_line = sources.location_word(source) == "line"
    problems: list[Problem] = []
    try:
        for line, row in sources.iter_rows(source, root):
            reason = desired.row_problem(destination, row)
            if reason is not None:
                suffix = "" if by_line else f" (row {line})"
                problems.append(Problem(file, reason + suffix, line if by_line else None))
                if len(problems) == MAX_REPORTED:
                    break
    except UnreadableRow as error:  # the file changed since the engine read it
        problems.append(Problem(file, error.message, error.line if by_line else None))
    except duckdb.Error:  # a Parquet file replaced by a damaged one meanwhile
        problems.append(Problem(file, "changed while segops read it: run the command again"))
    more = invalid - len(problems)
    tail = f"{plural(invalid, 'bad row')} for destination {destination.address}"
    tail += f" ({more} more not listed)" if more > 0 else ""
    tail += "; fix them, or set `on_bad_rows: skip` on the source to leave them out"
    problems.append(Problem(destination.manifest, tail, source.line, "spec.source"))
    return problems
