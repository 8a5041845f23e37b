"""Batches of mediarithmics command lines: contiguous row ranges, bounded in lines and bytes.

A destination's member delta streams through once: each command line is encoded as it is
built and appended to the body of the batch under construction, and a batch is handed over
as soon as the next line would pass a bound. Only that one body is ever held, never the rows.
A batch carries one set of command settings (removes use the settings before the change,
adds and updates those after it), so a file never mixes two targets; when both are the same,
removes and adds share batches (a file may mix UPDATE and DELETE, reference §1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby, islice
from typing import Final

from segops.destinations import ADD, REMOVE, UPDATE, MemberRow, Sent
from segops.destinations.mediarithmics import commands as mics
from segops.errors import DestinationError
from segops.model import HASH_FORMATS, DestinationChange, Settings

# The documented guideline for one file is 100 MB (reference §7); segops never goes above it.
MAX_BATCH_BYTES: Final = 100_000_000
DEFAULT_BATCH_LINES: Final = 500_000
DEFAULT_BATCH_BYTES: Final = 50_000_000
# Rows turned into lines at a time: a chunk that fits the batch is appended in one piece.
_CHUNK_ROWS: Final = 4096


@dataclass(frozen=True, slots=True)
class BatchLimits:
    lines: int = DEFAULT_BATCH_LINES
    bytes: int = DEFAULT_BATCH_BYTES

    def __post_init__(self) -> None:
        if self.lines < 1 or not 1 <= self.bytes <= MAX_BATCH_BYTES:
            raise DestinationError(
                f"batch_lines must be >= 1 and batch_bytes within 1..{MAX_BATCH_BYTES}"
            )


@dataclass(frozen=True, slots=True)
class FileShape:
    """The settings every line of a batch carries, and its CSV columns (empty for NDJSON)."""

    target: mics.CommandTarget
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows [start, end) of the delta as one upload body."""

    start: int
    end: int
    shape: FileShape
    body: bytes
    sent: Sent

    @property
    def lines(self) -> int:
        return self.end - self.start

    @property
    def datamart_id(self) -> str:
        return self.shape.target.datamart_id


def file_shapes(change: DestinationChange, mime: str) -> tuple[FileShape | None, FileShape | None]:
    """Return the shapes of the removes (settings before) and of the adds (settings after).

    CSV columns come from the attributes the destination declares, not from the rows, so a
    file's header does not depend on the data; when removes and adds share a target they
    share the columns (a DELETE leaves the optional cells empty).
    """
    if mime not in mics.MIME_TYPES:
        raise DestinationError(f"mime_type {mime!r} is not one of {mics.MIME_TYPES}")
    after = _shape(change.settings_after, mime, change.attributes)
    before = _shape(change.settings_before, mime, ())
    if before is not None and after is not None and before.target == after.target:
        before = after
    return before, after


def _shape(settings: Settings | None, mime: str, attributes: tuple[str, ...]) -> FileShape | None:
    if settings is None:
        return None
    target = mics.CommandTarget.from_settings(settings)
    columns: tuple[str, ...] = ()
    if mime == mics.CSV:
        columns = mics.csv_columns(
            target,
            expiration_ts="expiration_ts" in attributes,
            data_bag="data_bag" in attributes,
        )
    return FileShape(target, columns)


def iter_batches(
    change: DestinationChange, rows: Iterable[MemberRow], mime: str, limits: BatchLimits
) -> Iterator[Batch]:
    """Yield the batches of `rows` in order; each holds one shape and stays within `limits`.

    Raises:
        DestinationError: rows need settings the change lacks, or one line alone is too big.
    """
    before, after = file_shapes(change, mime)
    builder = _Builder(limits)
    for shape, group in groupby(rows, key=lambda row: before if row.op == REMOVE else after):
        if shape is None:
            raise DestinationError(
                f"{change.address}: rows to send but no settings to send them with"
            )
        builder.begin(shape, mics.csv_header(shape.columns).encode() if shape.columns else b"")
        columns = shape.columns or None
        while chunk := list(islice(group, _CHUNK_ROWS)):
            # command_lines yields exactly one line per row, in order
            lines = list(mics.command_lines(shape.target, chunk, mime, columns))
            yield from builder.add_chunk(chunk, lines)
        yield from builder.flush()


class _Builder:
    """The one batch under construction."""

    def __init__(self, limits: BatchLimits) -> None:
        self._limits = limits
        self._shape: FileShape | None = None
        self._header = b""
        self._body = bytearray()
        self._start = self._next = 0
        self._counts = {REMOVE: 0, ADD: 0, UPDATE: 0}
        self._position = 0  # rows seen, for rows without an index

    def begin(self, shape: FileShape, header: bytes) -> None:
        self._shape, self._header = shape, header

    def add_chunk(self, rows: list[MemberRow], lines: list[str]) -> Iterator[Batch]:
        """Append consecutive rows with their lines, line by line only where a bound falls."""
        data = "".join(lines).encode()
        first, last = rows[0].index, rows[-1].index
        used = self._next - self._start
        if (
            first >= 0
            and last - first == len(rows) - 1
            and (first == self._next or not self._body)
            and used + len(rows) <= self._limits.lines
            and len(self._body or self._header) + len(data) <= self._limits.bytes
        ):
            if not self._body:
                self._body += self._header
                self._start = first
            self._body += data
            self._next = last + 1
            self._position += len(rows)
            ops = [row.op for row in rows]
            for op in self._counts:
                self._counts[op] += ops.count(op)
            return
        for row, line in zip(rows, lines, strict=True):
            yield from self.add(row, line.encode())

    def add(self, row: MemberRow, line: bytes) -> Iterator[Batch]:
        index = row.index if row.index >= 0 else self._position
        self._position += 1
        lines = self._next - self._start
        if lines and (
            lines >= self._limits.lines
            or len(self._body) + len(line) > self._limits.bytes
            or index != self._next  # keep every batch one contiguous range
        ):
            yield from self.flush()
        if not self._body:
            if len(self._header) + len(line) > self._limits.bytes:
                raise DestinationError(
                    f"delta row {index}: its command line is {len(line)} bytes, "
                    f"more than batch_bytes {self._limits.bytes}"
                )
            self._body += self._header
            self._start = index
        self._body += line
        self._next = index + 1
        self._counts[row.op] += 1

    def flush(self) -> Iterator[Batch]:
        if self._next == self._start or self._shape is None:
            return
        counts = self._counts
        sent = Sent(add=counts[ADD], remove=counts[REMOVE], update=counts[UPDATE])
        body = bytes(self._body)
        self._body = bytearray()
        self._counts = {REMOVE: 0, ADD: 0, UPDATE: 0}
        start, self._start = self._start, self._next
        yield Batch(start, self._next, self._shape, body, sent)


def count_batches(
    change: DestinationChange,
    mime: str,
    limits: BatchLimits,
    rows: Callable[[], Iterable[MemberRow]] | None = None,
) -> int:
    """Return how many batches (executions) `iter_batches` cuts the change into.

    When every command line of a side has one known length (hash identifiers, no per-member
    attribute), this is arithmetic on the change's counts. Otherwise it is exact only with
    `rows` (the delta, read once more); without them, a lower bound counting lines only.
    """
    before, after = file_shapes(change, mime)
    counts = change.members
    removes = _Run(counts.remove, _line_bytes(before, change.settings_before, REMOVE, mime))
    # UPDATE lines carry the per-member attributes, whose lengths vary
    adds = _Run(
        counts.add + counts.update,
        None if change.attributes else _line_bytes(after, change.settings_after, ADD, mime),
    )
    groups: list[tuple[FileShape | None, list[_Run]]]
    if before is not None and before == after:  # one group: removes first, then the rest
        groups = [(after, [removes, adds])]
    else:
        groups = [(before, [removes]), (after, [adds])]
    known = all(run.size is not None for _, runs in groups for run in runs if run.lines)
    if not known and rows is not None:
        try:
            return sum(1 for _ in iter_batches(change, rows(), mime, limits))
        except DestinationError:  # apply reports it; the plan still counts the rest
            pass
    return sum(
        _count_runs(_header(shape), runs, limits) for shape, runs in groups if shape is not None
    )


@dataclass(frozen=True, slots=True)
class _Run:
    lines: int
    size: int | None  # bytes of each line; None: lines differ in length


def _line_bytes(
    shape: FileShape | None, settings: Settings | None, op: str, mime: str
) -> int | None:
    """Return the length of every `op` line of `shape` when it has one (a hash identifier)."""
    if shape is None or settings is None:
        return None
    length = HASH_FORMATS.get(str(dict(settings).get("identifier.format")))
    if length is None:
        return None
    row = MemberRow(op, "0" * length)  # hex needs no escaping: any key of this length
    return len(next(mics.command_lines(shape.target, [row], mime, shape.columns or None)).encode())


def _header(shape: FileShape | None) -> int:
    return len(mics.csv_header(shape.columns).encode()) if shape and shape.columns else 0


def _count_runs(header: int, runs: Iterable[_Run], limits: BatchLimits) -> int:
    """Return the batches `_Builder` cuts consecutive runs of same-length lines into."""
    batches, used_lines, used_bytes = 0, 0, 0
    for run in runs:
        left, size = run.lines, run.size or 1
        while left:
            room = min(limits.lines - used_lines, (limits.bytes - used_bytes) // size)
            if not batches or room <= 0:  # the next line opens a new batch
                batches, used_lines, used_bytes = batches + 1, 0, header
                room = max(1, min(limits.lines, (limits.bytes - header) // size))
            take = min(left, room)
            used_lines, used_bytes, left = used_lines + take, used_bytes + take * size, left - take
    return batches
