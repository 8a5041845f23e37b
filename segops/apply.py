"""Apply: walk a plan in order, hand each change to its destination, record what landed.

Apply decides nothing new: the plan says what to send. A destination's new state (its
snapshot and settings) is written only after the destination reported success, one
destination at a time, so an interrupted apply loses at most the destination in flight
(resending an UPDATE or DELETE is harmless). A failed destination keeps its old state
and does not stop the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from segops.destinations import ApplyResult, Destination, MemberRow, Sent
from segops.errors import DestinationError
from segops.members import MemberEngine
from segops.model import DestinationChange, Plan, SnapshotRef
from segops.state import StateStore
from segops.state.model import DestinationState, State

DestinationFactory = Callable[[DestinationChange], Destination]


@dataclass(frozen=True, slots=True)
class ApplyReport:
    results: tuple[ApplyResult, ...]
    state: State | None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def apply_plan(
    plan: Plan,
    store: StateStore,
    engine: MemberEngine,
    deltas: Path,
    destination_for: DestinationFactory,
    segops_version: str,
    on_result: Callable[[ApplyResult], None] = lambda _: None,
) -> ApplyReport:
    """Apply every change of `plan`; return each destination's result and the final state.

    The caller holds the state lock and has checked that the plan is not stale.
    """
    state = store.read() or State(str(uuid.uuid4()), 0, segops_version)
    results = []
    for change in plan.changes:
        if not change.is_change:
            continue
        result = _send(change, deltas, engine, destination_for)
        if result.ok or result.confirmed:
            entry = _recorded(change, result, state, store, engine, deltas)
            state = (
                state.without(change.address) if entry is None else state.with_destination(entry)
            )
            state = store.write(_stamped(state, segops_version))
        results.append(result)
        on_result(result)
    return ApplyReport(tuple(results), store.read())


def _send(
    change: DestinationChange,
    deltas: Path,
    engine: MemberEngine,
    destination_for: DestinationFactory,
) -> ApplyResult:
    if not change.members.changed:
        return ApplyResult(change.address, True, Sent(), message="settings recorded")
    delta = change.delta
    assert delta is not None, "a change with members to send has a delta file"

    def rows() -> Iterable[MemberRow]:
        return engine.read_delta(deltas / delta.name, change.encoding)

    try:
        return destination_for(change).apply(change, rows)
    except DestinationError as exc:
        return ApplyResult(change.address, False, Sent(), message=str(exc))


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
    before = state.get(change.address)
    partial = result.confirmed is not None
    if not partial and change.settings_after is None:
        return None
    if partial and change.setting_changes:
        return before
    settings = change.settings_after or change.settings_before
    assert settings is not None
    old = store.snapshot_path(before.snapshot.sha256) if before else None
    delta = deltas / change.delta.name if change.delta else None
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
    )


def _stamped(state: State, segops_version: str) -> State:
    return State(state.lineage, state.serial, segops_version, state.destinations)
