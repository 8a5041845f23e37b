"""Find one identifier: in a destination's source (with its lines) and in a snapshot.

For `segops explain`, which must say where one member comes from without printing any
other. The source is walked by segops' exact reader, row by row (a diagnostic, not the
plan's path), and each cell is read as the member engine reads it; the snapshot is one
DuckDB query over its key column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from segops.engine import cells, desired, identifiers, sources
from segops.engine.base import EngineBase
from segops.engine.sources.errors import UnreadableRow
from segops.engine.sources.sql import quote_literal
from segops.errors import SourceError
from segops.model import Destination, KeyEncoding, OnBadRows

_HEX = re.compile(r"(?:[0-9a-f]{2})+")
MAX_LINES = 10  # lines named per destination; the count says how many in all


@dataclass(frozen=True, slots=True)
class SourceMatch:
    """Where an identifier is in a destination's source."""

    valid: bool  # whether the identifier can be a member of this destination at all
    lines: tuple[int, ...] = ()  # rows holding it that are members (the first MAX_LINES)
    count: int = 0  # rows holding it that are members
    skipped: tuple[int, ...] = ()  # rows holding it left out as bad rows (on_bad_rows: skip)
    unreadable: str = ""  # why the source could not be read to the end


def find_in_source(destination: Destination, root: Path, value: str) -> SourceMatch:
    """Return the rows of `destination`'s source whose identifier is `value`."""
    ident = destination.identifier
    if identifiers.rule(ident).problem(value) is not None:
        return SourceMatch(valid=False)
    lines: list[int] = []
    skipped: list[int] = []
    count = 0
    try:
        for line, row in sources.iter_rows(destination.source, root):
            text, _ = cells.as_text(row.get(ident.column), identifiers.accepted(ident))
            if text != value:
                continue
            if desired.row_problem(destination, row) is not None:
                if destination.source.on_bad_rows is OnBadRows.SKIP:
                    skipped.append(line)
                continue
            count += 1
            if len(lines) < MAX_LINES:
                lines.append(line)
    except UnreadableRow as error:
        return SourceMatch(True, tuple(lines), count, tuple(skipped), error.message)
    except (SourceError, OSError) as error:
        return SourceMatch(True, tuple(lines), count, tuple(skipped), str(error))
    return SourceMatch(True, tuple(lines), count, tuple(skipped))


def snapshot_holds(engine: EngineBase, snapshot: Path, value: str, encoding: KeyEncoding) -> bool:
    """Return whether the snapshot file holds the member whose identifier is `value`."""
    if encoding is KeyEncoding.HEX and not _HEX.fullmatch(value):
        return False  # a hash snapshot holds lowercase hex only
    key = f"unhex({quote_literal(value)})" if encoding is KeyEncoding.HEX else quote_literal(value)
    sql = f"SELECT count(*) FROM read_parquet({quote_literal(str(snapshot))}) WHERE k = {key}"
    row = engine._run(f"the snapshot {snapshot.name}", lambda: engine.con.execute(sql).fetchone())
    return bool(row and row[0])
