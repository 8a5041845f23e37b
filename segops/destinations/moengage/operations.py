"""The MoEngage operations of one destination change: which segment, which request, which file.

No network here: `strategy_for` reads a change's settings, `plan_steps` turns its member delta
into steps, one member file (and one API operation) each.

- New destination: the first add file creates the segment (`create`); later files add-users.
  A destination that names a `segment.cs_id` points at an existing segment: add-users only.
- Same segment: removes go out as remove-users, adds as add-users.
- Recreate onto another segment (name or cs_id changed): every old member is removed from the
  old segment, then the new one is created (or, with a cs_id, filled with add-users).
- Recreate on the same segment because `attribute.name` or `attribute.type` changed: one
  `replace` with the first add file (MoEngage drops every user and loads the file), so the
  old members need no remove-users keyed by an attribute the segment no longer uses; this
  also saves one operation of the 10 an hour. The replace step covers the remove rows too.
  With nothing to add, the removes go out as remove-users instead (an empty file is not
  allowed).
- Destroy: remove-users of every member. The segment itself is left (empty) in MoEngage.
- Full (`--replace`, or a files connection that now sends to the API): the delta holds
  every desired member and no remove; the first file goes out as `replace`, which drops
  every other user of the segment (and creates it when MoEngage answers 404).
- Updates are skipped: MoEngage file segments carry no per-member attributes.

Each file holds at most `max_rows` lines (the daily user quota: a larger file never fits) and
stays under `max_bytes`. Delta rows of one operation are contiguous (`MemberRow.index`), so a
step's rows are ranges of the delta.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, groupby, islice
from operator import attrgetter

from segops.destinations import ADD, REMOVE, UPDATE, MemberRow
from segops.destinations.moengage import requests as moe
from segops.errors import DestinationError
from segops.model import DestinationChange, Scalar, Settings

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Strategy:
    remove_from: moe.FileSegment | None  # the segment removes go to (settings before)
    add_to: moe.FileSegment | None  # the segment adds go to (settings after)
    create: bool = False  # the first add file creates `add_to`
    replace: bool = False  # the first add file replaces the users of `add_to`


@dataclass(frozen=True, slots=True)
class Step:
    """One member file and the operation that sends it."""

    op_id: str  # stable across applies of the same delta: moe:{address}:{sha16}:{op}:{part}
    member_op: str  # add | remove: the rows the file holds
    request: str  # the operation to try first: create | add-users | remove-users | replace
    segment: moe.FileSegment
    part: int
    ranges: Ranges  # delta rows this step settles (a replace also settles the removes)
    removes: int  # rows of `ranges` that are removes
    adds: int
    data: bytes = field(repr=False)

    @property
    def users(self) -> int:
        """Return the lines of the file: what the quota counts."""
        return self.adds if self.member_op == ADD else self.removes

    @property
    def file_name(self) -> str:
        return f"{self.member_op}-{self.part:04d}.csv"


def strategy_for(change: DestinationChange, connection: str) -> Strategy:
    """Return how `change` reaches MoEngage through `connection`.

    Raises:
        DestinationError: a setting is missing or bad, or the old members live on another
            connection (another workspace's credentials would be needed to remove them).
    """
    old, new = dict(change.settings_before or ()), dict(change.settings_after or ())
    before = _segment(change.settings_before)
    after = _segment(change.settings_after)
    if before is not None and old.get("connection", connection) != connection:
        raise DestinationError(
            f"{change.address}: the applied members live on connection "
            f"{old.get('connection')!r}, not {connection!r}: destroy the destination there "
            "first (remove it from the manifests and apply), then add it here"
        )
    if after is None:
        return Strategy(before, None)
    if change.full:  # every desired member, against nothing: one replace sets the segment
        return Strategy(None, after, replace=change.members.add > 0)
    if before is None or not _same_segment(old, new):
        return Strategy(before, after, create=after.cs_id is None)
    attribute = any(old.get(k) != new.get(k) for k in ("attribute.name", "attribute.type"))
    return Strategy(before, after, replace=attribute and change.members.add > 0)


def _segment(settings: Settings | None) -> moe.FileSegment | None:
    return None if settings is None else moe.FileSegment.from_settings(settings)


def _same_segment(old: Mapping[str, Scalar], new: Mapping[str, Scalar]) -> bool:
    """Return whether both settings name the same MoEngage segment (cs_id first, then name)."""
    if old.get("connection") != new.get("connection"):
        return False
    old_id, new_id = old.get("segment.cs_id") or None, new.get("segment.cs_id") or None
    if old_id and new_id:
        return old_id == new_id
    return old.get("segment.name") == new.get("segment.name")


def op_id(address: str, delta_sha256: str, member_op: str, part: int) -> str:
    return f"moe:{address}:{delta_sha256[:16]}:{member_op}:{part}"


def plan_steps(
    change: DestinationChange,
    rows: Iterable[MemberRow],
    strategy: Strategy,
    max_rows: int,
    max_bytes: int = moe.MAX_FILE_BYTES,
    skipped: list[tuple[int, int]] | None = None,
) -> Iterator[Step]:
    """Yield the steps of `change` in sending order, building each file only when it is due.

    Update rows are not sent; their ranges are appended to `skipped`.
    """
    carried: Ranges = ()  # remove rows a replace settles
    for op, group in groupby(rows, key=attrgetter("op")):
        if op == UPDATE or (op == REMOVE and strategy.replace):
            span = _span(group)
            if op == REMOVE:
                carried = (span,)
            elif skipped is not None:
                skipped.append(span)
            continue
        if op not in (ADD, REMOVE):
            raise DestinationError(f"unknown member row operation {op!r}")
        segment = strategy.add_to if op == ADD else strategy.remove_from
        if segment is None:
            raise DestinationError(
                f"{change.address}: {op} rows to send but no settings to send them with"
            )
        files = _files(group, max_rows, max_bytes)
        for part, (start, end, data) in enumerate(files):
            yield _step(change, op, part, segment, strategy, (start, end), carried, data)


def _step(
    change: DestinationChange,
    op: str,
    part: int,
    segment: moe.FileSegment,
    strategy: Strategy,
    rows: tuple[int, int],
    carried: Ranges,
    data: bytes,
) -> Step:
    """Return the step sending file `part` of the `op` rows; the first add file may create or
    replace the segment (a replace also settles the `carried` remove rows)."""
    assert change.delta is not None, "a change with members to send has a delta"
    request = moe.ADD_USERS if op == ADD else moe.REMOVE_USERS
    ranges: Ranges = (rows,)
    count = rows[1] - rows[0]
    adds, removes = (count, 0) if op == ADD else (0, count)
    if op == ADD and part == 0 and (strategy.create or strategy.replace):
        request = moe.CREATE if strategy.create else moe.REPLACE
        ranges = carried + ranges
        removes = sum(e - s for s, e in carried)
    sha = change.delta.sha256
    return Step(
        op_id(change.address, sha, op, part),
        op,
        request,
        segment,
        part,
        ranges,
        removes,
        adds,
        data,
    )


def _span(rows: Iterable[MemberRow]) -> tuple[int, int]:
    start = end = -1
    for row in rows:
        start = row.index if start < 0 else start
        end = row.index + 1
    return start, end


def _files(
    rows: Iterable[MemberRow], max_rows: int, max_bytes: int
) -> Iterator[tuple[int, int, bytes]]:
    """Yield (first row, end row, file bytes) of each member file of `rows`.

    Files hold at most `max_rows` lines and `max_bytes` bytes. One file is in memory at a time
    (under 150 MB): publishers take bytes.
    """
    it = iter(rows)
    head = next(it, None)
    if head is None:
        return
    start = head.index
    it = chain([head], it)
    while True:
        buffer: list[bytes] = []
        count = part = 0
        for chunk in moe.csv_chunks((r.key for r in islice(it, max_rows)), max_bytes):
            if chunk.part != part and buffer:
                yield start, start + count, b"".join(buffer)
                start, buffer, count = start + count, [], 0
            part = chunk.part
            buffer.append(chunk.data)
            count += chunk.rows
        if not buffer:
            return
        yield start, start + count, b"".join(buffer)
        start += count


__all__ = ["Ranges", "Step", "Strategy", "op_id", "plan_steps", "strategy_for"]
