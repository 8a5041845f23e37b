"""The destination lifecycle outside plan and apply: `state rm`, `state mv`, `import`, `explain`.

The first three take the state lock, refuse an address an interrupted apply is still
working on (its operations are in the journal), and write the state once (the store keeps
the previous state.json as state.json.backup). `explain` only reads. None of them calls a
platform.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from segops.apply.journal import ApplyJournal
from segops.engine.interface import MemberEngine
from segops.engine.lookup import find_in_source
from segops.engine.sources import location_word
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
from segops.render.state import Finding
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


def explain(ctx: Context, engine: MemberEngine, value: str) -> list[Finding]:
    """Return, for every destination of the manifests or the state, whether the member
    whose identifier is `value` is desired there and whether the state says it was applied.
    """
    state = ctx.store.read()
    applied = {e.address: e for e in (state.destinations if state else ())}
    wanted = {d.address: d for d in ctx.workspace.destinations}
    journal = ApplyJournal(ctx.store.records)
    findings = []
    for address in sorted(wanted.keys() | applied.keys()):
        want, entry = wanted.get(address), applied.get(address)
        desired, where = _desired(ctx, want, value) if want else (False, "not in the manifests")
        held = None
        if entry is not None:
            path = ctx.store.snapshot_path(entry.snapshot.sha256)
            held = engine.holds(path, value, entry.snapshot.encoding)
        busy = any(e["status"] in ("sent", "accepted") for e in journal.operations(address))
        findings.append(Finding(address, desired, where, held, entry.last if entry else None, busy))
    return findings


def _desired(ctx: Context, want: Destination, value: str) -> tuple[bool, str]:
    source = want.source
    name = source.path or "inline members"
    found = find_in_source(want, ctx.root, value)
    word = location_word(source)
    if not found.valid:
        return False, f"it cannot be a member here: not a valid {_kind(want)}"
    if found.count:
        shown = ", ".join(str(n) for n in found.lines)
        more = (
            f" and {found.count - len(found.lines)} more" if found.count > len(found.lines) else ""
        )
        plural = word if found.count == 1 else f"{word}s"
        where = f"{want.manifest}, {name}" if source.path is None else f"{want.manifest}: {name}"
        return True, f"{where}, {plural} {shown}{more}"
    name = name if source.path else f"the inline members of {want.manifest}"
    if found.skipped:
        shown = ", ".join(str(n) for n in found.skipped[:10])
        return False, f"{name} holds it ({word} {shown}) in a bad row, skipped (on_bad_rows: skip)"
    if found.unreadable:
        return False, f"{name} could not be read to the end: {found.unreadable}"
    return False, f"not in {name} (column {want.identifier.column!r})"


def _kind(want: Destination) -> str:
    ident = want.identifier
    if ident.attribute_name:
        return f"{ident.attribute_type} attribute {ident.attribute_name}"
    return ident.kind.value + (f" ({ident.format})" if ident.format else "")


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
