"""Apply: walk a plan in order, hand each change to its destination, record what landed.

Apply decides nothing new: the plan says what to send. Crash safety rests on three rules:

- every operation a destination sends is journaled first (intent, then sent, accepted,
  confirmed or failed), so a new apply after a kill polls what the platform accepted
  instead of sending it again, and resends what it may never have received (resending an
  UPDATE or DELETE, an add or a remove, is harmless);
- a destination's state (snapshot and settings) is written only after the platform
  confirmed its change, and only for the rows it confirmed; the next plan sends the rest
  (in large applies, destinations share one write: see `GROUP_COMMIT_FROM`);
- journal entries are bound to the snapshot a change was computed against, so an entry
  can never vouch for a different change.

A failed destination keeps its old state and does not stop the others. A small change's
new snapshot is written (merged and stored) on a thread while the next destination sends:
its state entry waits for that, and results are reported in plan order all the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from segops import observe
from segops._text import plural
from segops.apply.journal import ApplyJournal
from segops.destinations import ApplyResult, DeltaRows, Destination, Sent, killpoints
from segops.errors import DestinationError
from segops.model import (
    DestinationChange,
    KeyEncoding,
    MemberRow,
    Plan,
    SnapshotRef,
    SourceRead,
)
from segops.state import StateStore
from segops.state.edits import forgotten_key
from segops.state.model import DestinationState, LastWrite, State

OpenDestination = Callable[[DestinationChange, "ScopedJournal"], Destination]
log = logging.getLogger("segops.apply")
T = TypeVar("T")

# An apply of GROUP_COMMIT_FROM changes or more writes the state once per GROUP_COMMIT_SIZE
# confirmed destinations (a group commit), and once at the end: each write rewrites the whole
# state.json and its backup with four fsyncs, which made 1,000 small destinations cost
# minutes. Nothing is written before its destination is confirmed; a kill before the write
# leaves those destinations to the journal and the next apply, as a kill right after one
# destination's confirmation always did. Smaller applies keep one write per destination, so
# their backup is one destination behind. Counts, not time, decide: serials are reproducible.
GROUP_COMMIT_FROM = 16
GROUP_COMMIT_SIZE = 64


class MemberEngine(Protocol):
    """What apply needs of the member engine (segops.engine): read deltas, merge snapshots."""

    @property
    def work(self) -> Path:
        """Return the command's scratch folder."""
        ...

    def read_delta(self, delta: Path, encoding: KeyEncoding) -> Iterator[MemberRow]:
        """Yield the delta's rows in file order, keys as the text that is sent."""
        ...

    def delta_batches(self, delta: Path, encoding: KeyEncoding) -> Iterator[Any]:
        """Yield the same rows as Arrow record batches (op, key, data_bag, expiration_ts, index)."""
        ...

    def merge_snapshot(
        self,
        snapshot: Path | None,
        delta: Path | None,
        attrs: Sequence[str],
        encoding: KeyEncoding,
        out_dir: Path,
        confirmed: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[Path, str, int]:
        """Write the snapshot after `delta` (its `confirmed` rows) landed; (path, sha256, count)."""
        ...

    def side_lane(self, inputs: Iterable[Path | None]) -> AbstractContextManager[None] | None:
        """Return a context for work on `inputs` beside the main thread's, or None."""
        ...


@dataclass(frozen=True, slots=True)
class ApplyReport:
    results: tuple[ApplyResult, ...]
    state: State | None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


class ScopedJournal:
    """The journal as one change sees it: entries of other bases are invisible to it.

    A base is the snapshot the change was computed against *and* its settings before and
    after: a snapshot holds members only, so a recreate (or an attribute change) leaves
    the same snapshot and the same delta as the change before it. Without the settings, a
    kill after that change's state write left entries that vouched for the next one.
    """

    def __init__(self, journal: ApplyJournal, change: DestinationChange) -> None:
        self._journal = journal
        settings = json.dumps([change.settings_before, change.settings_after], sort_keys=True)
        digest = hashlib.sha256(settings.encode()).hexdigest()[:16]
        self._base = f"{change.base or 'none'}:{digest}"

    def get(self, op_id: str) -> Mapping[str, Any] | None:
        entry = self._journal.get(op_id)
        return entry if entry is not None and entry.get("base") == self._base else None

    def record(self, op_id: str, address: str, status: str, **details: Any) -> None:
        self._journal.record(op_id, address, status, base=self._base, **details)


def apply_plan(
    plan: Plan,
    store: StateStore,
    engine: MemberEngine,
    deltas: Path,
    journal: ApplyJournal,
    destination_for: OpenDestination,
    segops_version: str,
    on_result: Callable[[ApplyResult], None] = lambda _: None,
    *,
    run: str = "",
    vias: Mapping[str, str] | None = None,
    stop: Callable[[], bool] = lambda: False,
    reads: Mapping[str, SourceRead] | None = None,
) -> ApplyReport:
    """Apply every change of `plan`; return each destination's result and the final state.

    The caller holds the state lock and has checked that the plan is not stale. `run` names
    this apply in the entries it writes; `vias` gives each connection's own platform
    ("files" for a files connection), recorded so that a later switch shows in the plan.
    Once `stop()` says so (Ctrl-C), no further destination is started; the one under way
    finishes what it sent and its confirmed part is recorded.
    `reads` says which source bytes each change's diff read: a change that lands whole records
    it, so the next plan of the same bytes against the new snapshot can skip the diff.
    """
    reads = reads or {}
    state = store.read()
    killpoints.reached("apply:start")
    results = []
    landed: list[str] = []  # addresses whose entries wait for the next state write
    changes = [c for c in plan.changes if c.is_change]
    group = GROUP_COMMIT_SIZE if len(changes) >= GROUP_COMMIT_FROM else 1

    def commit() -> None:
        nonlocal state
        assert state is not None
        merged = {**dict(state.resources), **journal.resources}
        for address in landed:
            merged.pop(forgotten_key(address), None)  # managed again: no import hint
        resources = tuple(sorted(merged.items()))
        state = store.write(replace(state, segops_version=segops_version, resources=resources))
        log.info("state written, serial %d (%s)", state.serial, plural(len(landed), "destination"))
        killpoints.reached("apply:state-written")
        journal.forget(*landed)
        landed.clear()

    def land(
        change: DestinationChange, result: ApplyResult, entry: DestinationState | None
    ) -> None:
        """Record a confirmed change's entry in the state; write it when a group is full."""
        nonlocal state
        assert state is not None
        entry = _with_read(entry, result, reads.get(change.address))
        if entry is not None:
            via = (vias or {}).get(change.connection, "")
            last = LastWrite(run or "apply", "apply", _now())
            entry = replace(entry, via=via or entry.via, last=last)
        state = _rekeyed(state, change, entry)
        landed.append(change.address)
        if len(landed) >= group:
            commit()

    # The change whose snapshot is being written beside the next send: (change, result, entry)
    recording: tuple[DestinationChange, ApplyResult, Future[DestinationState | None]] | None
    recording = None

    def settle() -> None:
        """Land the change being recorded and report it (its snapshot is written first)."""
        nonlocal recording
        if recording is not None:
            change, result, entry = recording
            recording = None
            land(change, result, entry.result())
            results.append(result)
            on_result(result)
            step.advance()

    recorder = ThreadPoolExecutor(1, thread_name_prefix="segops-record")
    with observe.step("Applying", len(changes), "destinations") as step:
        try:
            for change in changes:
                if stop():
                    log.info("%s: not started: apply was interrupted", change.address)
                    break
                if state is None:  # recorded before anything is sent: a kill resumes this lineage
                    state = store.begin(State(str(uuid.uuid4()), 0, segops_version))
                m = change.members
                log.info("%s: sending +%d ~%d -%d", change.address, m.add, m.update, m.remove)
                began = time.monotonic()
                result = _send(change, deltas, engine, journal, destination_for)
                took = time.monotonic() - began
                if result.ok:
                    log.info("%s: done in %.2f s", change.address, took)
                else:
                    reason = result.message.splitlines()[0] if result.message else "failed"
                    log.warning("%s: not done after %.2f s: %s", change.address, took, reason)
                settle()
                if result.ok or result.confirmed:
                    killpoints.reached("apply:confirmed")
                    record = partial(_recorded, change, result, state, store, engine, deltas)
                    lane = engine.side_lane(_merge_inputs(change, state, store, deltas))
                    if lane is not None:
                        recording = (change, result, recorder.submit(_within, lane, record))
                        continue
                    land(change, result, record())
                results.append(result)
                on_result(result)
                step.advance()
            settle()
        finally:
            recorder.shutdown(wait=True, cancel_futures=True)
    if landed:
        commit()
    return ApplyReport(tuple(results), store.read())


def _within(context: AbstractContextManager[None], call: Callable[[], T]) -> T:
    """Return `call()` run inside `context` (a lane of the engine, on the recorder's thread)."""
    with context:
        return call()


def _merge_inputs(
    change: DestinationChange, state: State, store: StateStore, deltas: Path
) -> tuple[Path | None, Path | None]:
    """Return the snapshot and the delta the merge of `change`'s snapshot reads (or None).

    A full change was compared with nothing: what landed is the whole new membership.
    """
    before = state.get(change.moved_from or change.address)
    old = store.snapshot_path(before.snapshot.sha256) if before and not change.full else None
    return old, deltas / change.delta.name if change.delta else None


def _rekeyed(state: State, change: DestinationChange, entry: DestinationState | None) -> State:
    """Return `state` with `entry` recorded for `change` (None: the destination is gone).

    A moved entry leaves its old address once the new one is written; an entry kept as it
    was (a partly confirmed change whose settings changed) stays where it is.
    """
    if entry is None:
        return state.without(change.address)
    if change.moved_from and entry.address == change.address:
        state = state.without(change.moved_from)
    return state.with_destination(entry)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _send(
    change: DestinationChange,
    deltas: Path,
    engine: MemberEngine,
    journal: ApplyJournal,
    destination_for: OpenDestination,
) -> ApplyResult:
    if not change.members.changed:
        return ApplyResult(change.address, True, Sent(), message="settings recorded")
    delta = change.delta
    assert delta is not None, "a change with members to send has a delta file"

    path = deltas / delta.name
    rows = DeltaRows(
        lambda: engine.read_delta(path, change.encoding),
        lambda: engine.delta_batches(path, change.encoding),
    )
    try:
        return destination_for(change, ScopedJournal(journal, change)).apply(change, rows)
    except DestinationError as exc:
        return ApplyResult(change.address, False, Sent(), message=str(exc))


def _with_read(
    entry: DestinationState | None, result: ApplyResult, read: SourceRead | None
) -> DestinationState | None:
    """Return `entry` with the read its snapshot now holds exactly; none when partly landed."""
    if entry is None:
        return None
    whole = result.ok and result.confirmed is None and not result.pending
    return replace(entry, source=read if whole else None)


def _recorded(
    change: DestinationChange,
    result: ApplyResult,
    state: State,
    store: StateStore,
    engine: MemberEngine,
    deltas: Path,
) -> DestinationState | None:
    """Return the state entry after `change` landed (None: the destination is gone).

    A partly confirmed change (`result.confirmed` ranges) records only the confirmed rows,
    except when settings changed too: then the members sit under two sets of settings, and
    the old entry is kept whole so the next plan sends the whole change again.
    """
    before = state.get(change.moved_from or change.address)
    partial = result.confirmed is not None
    if not partial and change.settings_after is None:
        return None
    if partial and change.setting_changes:
        return before
    settings = change.settings_after or change.settings_before
    assert settings is not None
    old, delta = _merge_inputs(change, state, store, deltas)
    path, digest, count = engine.merge_snapshot(
        old,
        delta,
        change.attributes,
        change.encoding,
        engine.work / "snapshots",
        result.confirmed,
    )
    store.put_snapshot(path, digest)
    return DestinationState(
        address=change.address,
        segment=change.segment,
        connection=change.connection,
        platform=change.platform,
        settings=settings,
        snapshot=SnapshotRef(digest, count, change.encoding, change.attributes),
        pending=result.pending,
        pending_eta=result.eta,
        unconfirmed=result.unconfirmed
        or (before is not None and before.unconfirmed and not change.full),
    )
