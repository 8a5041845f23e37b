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
    MemberCounts,
    Plan,
    Platform,
    Scalar,
    SettingChange,
)
from segops.planning.moves import Move, shared_identity_problems
from segops.state.edits import forgotten_key
from segops.state.model import DestinationState, State

if TYPE_CHECKING:
    from segops.planning.inputs import Pins


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one address before member counts are known."""

    address: str
    desired: Destination | None
    applied: DestinationState | None  # at `moved_from` when the entry moves here
    mode: DiffMode
    setting_changes: tuple[SettingChange, ...]
    moved_from: str = ""
    why: str = ""  # a recreate asked for (--replace) or forced by the connection's platform
    notes: tuple[str, ...] = ()
    destroy_asked: bool = False  # --destroy: the destination is destroyed on request

    @property
    def request(self) -> DiffRequest:
        full = self.mode is DiffMode.FULL
        snapshot = self.applied.snapshot if self.applied and not full else None
        return DiffRequest(self.address, self.mode, self.desired, snapshot)


def decide(
    desired: Sequence[Destination],
    state: State | None,
    connections: Collection[str],
    moves: Sequence[Move] = (),
    replace_addresses: Collection[str] = (),
    destroy: bool = False,
) -> tuple[Decision, ...]:
    """Pair desired destinations with applied ones and decide how each is compared.

    `moves` pair a new address with the applied entry of an old one (see planning.moves);
    `replace_addresses` are sent whole again (--replace); with `destroy`, `desired` is empty
    and every applied entry is destroyed on request.

    Raises PlanError when a destination must be destroyed but its connection is gone, or
    when a destroyed destination shares its platform segment with a created one.
    """
    by_address = {d.address: d for d in desired}
    applied = {e.address: e for e in (state.destinations if state else ())}
    moved = {m.new: m.old for m in moves if m.new in by_address and m.old in applied}
    resources = dict(state.resources) if state else {}
    decisions = []
    for address in sorted(by_address.keys() | (applied.keys() - set(moved.values()))):
        want = by_address.get(address)
        old = moved.get(address, address)
        have = applied.get(old) if want is not None or old == address else None
        if want is None and have is not None and have.connection not in connections:
            why = "--destroy" if destroy else "it left the manifests"
            raise PlanError(
                f"{address} must be destroyed ({why}) but its connection '{have.connection}' is "
                "no longer in segops.yaml: restore the connection so segops can remove the members"
            )
        resend = address in replace_addresses
        decisions.append(_decision(address, want, have, old, resend, destroy, resources))
    going = {d.address: d.applied for d in decisions if d.desired is None and d.applied}
    coming = {d.address: d.desired for d in decisions if d.applied is None and d.desired}
    problems = shared_identity_problems(going, coming)
    if problems:
        raise PlanError(
            "the plan would remove members from a platform segment another destination fills: "
            + "; ".join(problems)
            + ". Add a `moved: [{from, to}]` block to segops.yaml, or apply the destroy first"
        )
    return tuple(decisions)


def _decision(
    address: str,
    want: Destination | None,
    have: DestinationState | None,
    old: str,
    resend: bool,
    destroy: bool,
    resources: Mapping[str, str],
) -> Decision:
    changes = _setting_changes(have, want)
    mode, why = _mode(changes), ""
    switched = _via_change(have, want)
    if switched is not None and want is not None and have is not None:
        changes = tuple(sorted((*changes, switched), key=lambda c: c.path))
        mode, why = DiffMode.FULL, _switch_reason(want, str(switched.before), str(switched.after))
    elif resend and want is not None and have is not None:
        spec = platform_spec(want.platform)
        resync = spec.resync_mode if spec is not None else DiffMode.REFRESH
        mode = DiffMode.REPLACE if mode is DiffMode.REPLACE else resync
        why = "replaced as requested (--replace): " + (
            "every desired member is sent again and replaces the segment's users"
            if mode is DiffMode.FULL
            else "every desired member is sent again, and every member the state holds "
            "that is no longer desired is removed"
        )
    notes = _notes(address, want, have, resources)
    moved_from = old if old != address and have is not None else ""
    return Decision(address, want, have, mode, changes, moved_from, why, notes, destroy)


def _via_change(have: DestinationState | None, want: Destination | None) -> SettingChange | None:
    """Return the change of the connection's own platform (files <-> the API), if any."""
    if have is None or want is None or not have.via:
        return None
    now = str(want.connection.platform)
    if have.via == now:
        return None
    return SettingChange("connection.platform", have.via, now, "recreate")


def _switch_reason(want: Destination, before: str, after: str) -> str:
    def doing(platform: str, now: bool = True) -> str:
        if platform == Platform.FILES:
            return "writes files" if now else "writing files"
        return f"sends to {platform}" if now else f"sending to {platform}"

    where = (
        "they were only written to files"
        if before == Platform.FILES
        else f"they stay on {before}, which segops no longer manages through this connection"
    )
    return (
        f"connection {want.connection.name} now {doing(after)} instead of "
        f"{doing(before, now=False)}: "
        f"every desired member is sent, and none of the applied ones is removed ({where})"
    )


def _notes(
    address: str,
    want: Destination | None,
    have: DestinationState | None,
    resources: Mapping[str, str],
) -> tuple[str, ...]:
    notes = []
    if want is not None and have is None:
        spec = platform_spec(want.platform)
        known = spec.known_segment(want.settings, resources) if spec else ""
        left = resources.get(forgotten_key(address))
        if left is not None:
            plural = "member" if left == "1" else "members"
            known = f"`segops state rm` forgot {address} and left its {left} {plural} there"
        if known:
            notes.append(
                f"the platform segment already exists ({known}) and the state has no members "
                f"for it: if it holds members, adopt them first with `segops import {address} "
                f"--members FILE` (or `--assume-empty`), so that the plan sends only the difference"
            )
    if have is not None and have.unconfirmed:
        notes.append(
            "the members last sent were accepted by the platform but never confirmed (no "
            "callback configured): the platform may hold fewer; configure `callback` and run "
            f"`segops apply --replace {address}` to send them again and confirm them"
        )
    return tuple(notes)


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
    full = decision.mode is DiffMode.FULL
    counts = result.counts
    if full and have is not None:  # compared with nothing: say how many the state holds
        counts = MemberCounts(have.snapshot.count, counts.add, counts.add, 0, 0, counts.skipped)
    return DestinationChange(
        address=decision.address,
        segment=ref.segment,
        connection=want.connection.name if want else (have.connection if have else ""),
        platform=want.platform if want else (have.platform if have else Platform.FILES),
        actions=actions,
        settings_before=have.settings if have else None,
        settings_after=want.settings if want else None,
        setting_changes=decision.setting_changes,
        members=counts,
        delta=result.delta,
        encoding=encoding,
        reason=reason,
        attributes=want.attributes if want else (),
        base=have.snapshot.sha256 if have and not full else "",
        moved_from=decision.moved_from,
        full=full,
        notes=decision.notes,
    )


def _actions(decision: Decision, result: DiffResult) -> tuple[tuple[Action, ...], str]:
    if decision.applied is None:
        return (Action.CREATE,), ""
    if decision.desired is None:
        if decision.destroy_asked:
            return (Action.DESTROY,), "destroy requested (--destroy): every member is removed"
        return (Action.DESTROY,), "the destination is no longer in the manifests"
    moved = (Action.MOVE,) if decision.moved_from else ()
    if decision.why:
        return (*moved, Action.RECREATE), decision.why
    effects = {c.effect: c.path for c in decision.setting_changes}
    if "recreate" in effects:
        keys = ", ".join(c.path for c in decision.setting_changes if c.effect == "recreate")
        return (*moved, Action.RECREATE), (
            f"{keys} changed: applied members are removed under the old value, "
            "desired ones added under the new"
        )
    if "refresh" in effects:
        keys = ", ".join(c.path for c in decision.setting_changes if c.effect == "refresh")
        return (*moved, Action.RECREATE), f"{keys} changed: every member is sent again"
    counts = result.counts
    actions = [a for a, n in ((Action.ADD, counts.add), (Action.REMOVE, counts.remove)) if n]
    if counts.update or decision.setting_changes:
        actions.append(Action.UPDATE)
    return ((*moved, *actions) or (Action.NO_OP,)), ""


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
    before, after = dict(have.settings), dict(want.settings)
    if _typed(before) == _typed(after):  # most plans: nothing to diff, deepdiff not imported
        return ()
    # Imported here: 0.1 s at start-up, and deepdiff imports pandas when it is installed
    # (the spark extra brings it): 0.5 s more.
    from deepdiff import DeepDiff

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


def _typed(settings: dict[str, Scalar]) -> dict[str, tuple[type, Scalar]]:
    """Return settings with each value's type beside it: 1, 1.0 and True differ for deepdiff."""
    return {k: (type(v), v) for k, v in settings.items()}


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
