"""The planning core: pure functions of the workspace, the state and the member diffs.

No I/O, clock or environment here. Planning is a sandwich:

1. `diff_requests(desired, state)` decides, per destination address, what the member
   engine must compare (and how: merge, refresh or replace);
2. the engine (segops.engine.duck) runs those comparisons and returns counts and delta files;
3. `build_plan(...)` turns decisions and diff results into an immutable `Plan`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from segops.destinations.registry import platform_spec
from segops.errors import PlanError
from segops.model import (
    Action,
    Destination,
    DestinationChange,
    DiffMode,
    DiffRequest,
    DiffResult,
    Plan,
    Platform,
    SettingChange,
)
from segops.state.model import DestinationState, State

if TYPE_CHECKING:
    from segops.planning.inputs import Pins


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one address before member counts are known."""

    address: str
    desired: Destination | None
    applied: DestinationState | None
    mode: DiffMode
    setting_changes: tuple[SettingChange, ...]

    @property
    def request(self) -> DiffRequest:
        snapshot = self.applied.snapshot if self.applied else None
        return DiffRequest(self.address, self.mode, self.desired, snapshot)


def decide(
    desired: Sequence[Destination], state: State | None, connections: Collection[str]
) -> tuple[Decision, ...]:
    """Pair desired destinations with applied ones and decide how each is compared.

    Raises PlanError when a destination must be destroyed but its connection is gone.
    """
    by_address = {d.address: d for d in desired}
    applied = {e.address: e for e in (state.destinations if state else ())}
    decisions = []
    for address in sorted(by_address.keys() | applied.keys()):
        want, have = by_address.get(address), applied.get(address)
        if want is None and have is not None and have.connection not in connections:
            raise PlanError(
                f"{address} must be destroyed (it left the manifests) but its connection "
                f"'{have.connection}' is no longer in segops.yaml: restore the connection so "
                "segops can remove the members"
            )
        changes = _setting_changes(have, want)
        decisions.append(Decision(address, want, have, _mode(changes), changes))
    return tuple(decisions)


def build_plan(
    decisions: Sequence[Decision],
    results: Mapping[str, DiffResult],
    state: State | None,
    pins: Pins,
    segops_version: str,
) -> Plan:
    """Return the plan for `decisions`, given the member engine's result for each."""
    changes = tuple(_change(d, results[d.address]) for d in decisions)
    return Plan(
        segops_version=segops_version,
        lineage=state.lineage if state else None,
        serial=state.serial if state else 0,
        definitions=tuple(sorted(pins.definitions, key=lambda f: f.path)),
        data=tuple(sorted(pins.data, key=lambda p: (p.segment, p.source))),
        changes=tuple(sorted(changes, key=lambda c: c.address)),
    )


def _change(decision: Decision, result: DiffResult) -> DestinationChange:
    want, have = decision.desired, decision.applied
    ref = want if want is not None else have
    assert ref is not None
    actions, reason = _actions(decision, result)
    encoding = want.identifier.encoding if want else (have.snapshot.encoding if have else None)
    assert encoding is not None
    return DestinationChange(
        address=decision.address,
        segment=ref.segment,
        connection=want.connection.name if want else (have.connection if have else ""),
        platform=want.platform if want else (have.platform if have else Platform.FILES),
        actions=actions,
        settings_before=have.settings if have else None,
        settings_after=want.settings if want else None,
        setting_changes=decision.setting_changes,
        members=result.counts,
        delta=result.delta,
        encoding=encoding,
        reason=reason,
        attributes=want.attributes if want else (),
        base=have.snapshot.sha256 if have else "",
    )


def _actions(decision: Decision, result: DiffResult) -> tuple[tuple[Action, ...], str]:
    if decision.applied is None:
        return (Action.CREATE,), ""
    if decision.desired is None:
        return (Action.DESTROY,), "the destination is no longer in the manifests"
    effects = {c.effect: c.path for c in decision.setting_changes}
    if "recreate" in effects:
        keys = ", ".join(c.path for c in decision.setting_changes if c.effect == "recreate")
        return (Action.RECREATE,), (
            f"{keys} changed: applied members are removed under the old value, "
            "desired ones added under the new"
        )
    if "refresh" in effects:
        keys = ", ".join(c.path for c in decision.setting_changes if c.effect == "refresh")
        return (Action.RECREATE,), f"{keys} changed: every member is sent again"
    counts = result.counts
    actions = [a for a, n in ((Action.ADD, counts.add), (Action.REMOVE, counts.remove)) if n]
    if counts.update or decision.setting_changes:
        actions.append(Action.UPDATE)
    return (tuple(actions) or (Action.NO_OP,)), ""


def _mode(changes: Sequence[SettingChange]) -> DiffMode:
    effects = {c.effect for c in changes}
    if "recreate" in effects:
        return DiffMode.REPLACE
    return DiffMode.REFRESH if "refresh" in effects else DiffMode.MERGE


def _setting_changes(
    have: DestinationState | None, want: Destination | None
) -> tuple[SettingChange, ...]:
    """Diff the settings with deepdiff and convert at once to segops' own SettingChange."""
    if have is None or want is None:
        return ()
    from deepdiff import DeepDiff  # imported here: it costs 0.1 s at start-up, needed rarely

    before, after = dict(have.settings), dict(want.settings)
    diff = DeepDiff(before, after, ignore_order=False)
    specs = [s for s in map(platform_spec, {have.platform, want.platform}) if s is not None]
    identity = set().union(*(s.identity_settings for s in specs))
    refresh = set().union(*(s.refresh_settings for s in specs))
    if have.platform != want.platform:
        identity.add("connection")
    changes = []
    for key in sorted(str(k) for k in diff.affected_root_keys):
        effect = "recreate" if key in identity else "refresh" if key in refresh else "in-place"
        changes.append(SettingChange(key, before.get(key), after.get(key), effect))
    return tuple(changes)


def stale_reasons(plan: Plan, state: State | None) -> tuple[str, ...]:
    """Return why `plan` may no longer be applied: the state moved since it was made."""
    lineage = state.lineage if state else None
    serial = state.serial if state else 0
    if lineage != plan.lineage:
        now = f"the state lineage is {lineage}" if lineage else "there is no state now"
        then = (
            f"the plan was made for lineage {plan.lineage}"
            if plan.lineage
            else "the plan was made when there was no state"
        )
        return (f"{now}, {then}",)
    if serial != plan.serial:
        return (f"the state serial is {serial}, the plan was made at serial {plan.serial}",)
    return ()
