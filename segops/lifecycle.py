"""The commands that change the state without apply: `state rm`, `state mv`, `import`.

Each takes the state lock, refuses an address an interrupted apply is still working on
(its operations are in the journal), and writes the state once (the store keeps the
previous state.json as state.json.backup). None of them calls a platform.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from segops.apply.journal import ApplyJournal
from segops.engine.duck import MemberEngine
from segops.errors import Problem, SourceError, StateError, UsageError
from segops.model import (
    Destination,
    DiffMode,
    DiffRequest,
    OnBadRows,
    SnapshotRef,
    Source,
    SourceKind,
)
from segops.operations import Context, release_lock, take_lock
from segops.planning.moves import find_moves
from segops.state import edits
from segops.state.model import DestinationState, LastWrite, State

_KINDS = {
    ".csv": SourceKind.CSV,
    ".ndjson": SourceKind.NDJSON,
    ".jsonl": SourceKind.NDJSON,
    ".parquet": SourceKind.PARQUET,
}


@dataclass(frozen=True, slots=True)
class Moved:
    entry: DestinationState
    in_manifests: bool  # whether the new address is a destination of the manifests


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def state_rm(ctx: Context, addresses: list[str]) -> list[DestinationState]:
    """Forget `addresses` (their members stay on the platform); return the entries forgotten."""
    lock, created = take_lock(ctx.store, "state rm")
    try:
        state = ctx.store.read()
        entries = [edits.entry_of(state, a) for a in addresses]
        _check_not_applying(ctx, addresses)
        ctx.store.write(edits.forget(state, addresses))
    finally:
        release_lock(ctx.store, lock, created)
    return entries


def state_mv(ctx: Context, old: str, new: str) -> Moved:
    """Move the entry at `old` to `new`; return it as written."""
    edits.check_address(new, "TO")
    lock, created = take_lock(ctx.store, "state mv")
    try:
        state = ctx.store.read()
        _check_not_applying(ctx, [old])
        written = ctx.store.write(edits.move(state, old, new, now()))
    finally:
        release_lock(ctx.store, lock, created)
    entry = written.get(new)
    assert entry is not None
    wanted = {d.address for d in ctx.workspace.destinations}
    return Moved(entry, new in wanted)


def import_destination(
    ctx: Context, engine: MemberEngine, address: str, members: Path | None, version: str
) -> DestinationState:
    """Record what the platform segment of `address` holds as applied; send nothing.

    `members` is a CSV, NDJSON or Parquet file with the destination's identifier column;
    None means the segment is empty (--assume-empty).

    Raises:
        UsageError: `address` is not a destination of the manifests, is in the state already,
            or is the new address of a rename (the next plan moves the old entry there).
        SourceError: the members file is unreadable or holds bad identifiers.
    """
    want = next((d for d in ctx.workspace.destinations if d.address == address), None)
    if want is None:
        known = ", ".join(d.address for d in ctx.workspace.destinations[:10])
        raise UsageError(
            f"import {address}: not a destination in the manifests (import adopts the "
            f"platform segment of a destination the manifests declare; they declare: {known})"
        )
    lock, created = take_lock(ctx.store, "import")
    try:
        state = ctx.store.read()
        _check_importable(ctx, state, want)
        snapshot = _imported_snapshot(ctx, engine, want, members)
        if state is None:  # the first write of a new state
            state = ctx.store.begin(State(str(uuid.uuid4()), 0, version))
        how = f"import --members {members.name}" if members else "import --assume-empty"
        entry = DestinationState(
            address=want.address,
            segment=want.segment,
            connection=want.connection.name,
            platform=want.platform,
            settings=want.settings,
            snapshot=snapshot,
            via=str(want.connection.platform),
            last=LastWrite(how, "import", now()),
        )
        ctx.store.write(replace(edits.adopt(state, entry), segops_version=version))
    finally:
        release_lock(ctx.store, lock, created)
    return entry


def _check_importable(ctx: Context, state: State | None, want: Destination) -> None:
    if state is not None and state.get(want.address) is not None:
        raise UsageError(
            f"import {want.address}: already in the state; to import it again, forget it "
            f"first with `segops state rm {want.address}`"
        )
    applied = state.destinations if state else ()
    for move in find_moves(ctx.workspace.destinations, applied, ctx.workspace.moved):
        if move.new == want.address:
            raise UsageError(
                f"import {want.address}: {move.old} in the state writes the same platform "
                f"segment; the next plan moves it to {want.address}, so there is nothing to import"
            )
    _check_not_applying(ctx, [want.address])


def _imported_snapshot(
    ctx: Context, engine: MemberEngine, want: Destination, members: Path | None
) -> SnapshotRef:
    """Write and store the snapshot of the members file (or of no member); return its ref."""
    encoding = want.identifier.encoding
    out = ctx.work / "snapshots"
    if members is None:
        path, digest, count = engine.merge_snapshot(None, None, (), encoding, out)
    else:
        reading = _reading(want, members)
        request = DiffRequest(want.address, DiffMode.MERGE, reading, None)
        try:
            result = engine.diff(request, None, ctx.work / "imported")
        except SourceError as exc:
            raise _members_error(exc, members) from None
        delta = ctx.work / "imported" / result.delta.name if result.delta else None
        path, digest, count = engine.merge_snapshot(None, delta, (), encoding, out)
    ctx.store.put_snapshot(path, digest)
    return SnapshotRef(digest, count, encoding, ())


def _reading(want: Destination, members: Path) -> Destination:
    """Return `want` reading its identifier column from `members` (attributes are unknown)."""
    kind = _KINDS.get(members.suffix.lower())
    if kind is None:
        raise UsageError(
            f"--members {members}: give a .csv, .ndjson (or .jsonl) or .parquet file with the "
            f"column {want.identifier.column!r}"
        )
    resolved = members.resolve()
    if not resolved.is_file():
        raise UsageError(f"--members {members}: no such file")
    source = Source(kind, str(resolved), 0, path=str(resolved), on_bad_rows=OnBadRows.ERROR)
    return replace(want, source=source, data_bag_column=None, expiration_ts_column=None)


def _members_error(exc: SourceError, members: Path) -> SourceError:
    """Return the errors of a members file, without the advice meant for manifests."""
    kept = [p for p in exc.problems if p.path != "spec.source"]
    if len(kept) < len(exc.problems):
        kept.append(
            Problem(
                str(members), "fix these rows: every member imported must be a valid identifier"
            )
        )
    return SourceError(kept)


def _check_not_applying(ctx: Context, addresses: list[str]) -> None:
    """Refuse addresses whose operations an interrupted apply left in the journal.

    Only operations that may have reached the platform count: a failed one did not, and
    one recorded only as an intent was never sent.
    """
    journal = ApplyJournal(ctx.store.records)
    landed = ("sent", "accepted", "confirmed")
    busy = [a for a in addresses if any(e["status"] in landed for e in journal.operations(a))]
    if busy:
        raise StateError(
            f"{', '.join(busy)}: an apply of it was interrupted, and its operations are still "
            f"in the journal ({journal.where}): run `segops apply` to finish it first"
        )
