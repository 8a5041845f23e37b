"""Safety guards: changes a reviewer must never approve by accident. Pure.

On by default, set in segops.yaml `safety` and overridable per manifest (`spec.safety`):

- empty-source: a source with no members never removes any, and never creates a destination
  with no members, which is almost always a broken export (unless allow_empty_source);
- max-removal-fraction / max-removals: a destination may not lose more than a share
  (default 25%) or a count of its members in one apply; a destroy loses all of them;
- no-state-only-adds: with no state at all (first apply, or a lost state), only adds.

A tripped guard stops the change: the plan says so and exits 3, apply refuses, and only
`segops apply FILE --allow-removals SEGMENT` lets that one saved plan through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from segops.errors import GuardError, UsageError
from segops.model import Action, DestinationChange, GuardTrip, Plan, Safety


def with_guards(plan: Plan, rules: Mapping[str, Safety], default: Safety) -> Plan:
    """Return `plan` with the guards each change trips, `rules` by segment name."""
    has_state = plan.lineage is not None
    changes = tuple(
        replace(c, guards=trips(c, rules.get(c.segment, default), has_state)) for c in plan.changes
    )
    return replace(plan, changes=changes)


def trips(change: DestinationChange, safety: Safety, has_state: bool) -> tuple[GuardTrip, ...]:
    """Return the guards `change` trips under `safety`."""
    counts = change.members
    lost = _lost(change)
    found: list[GuardTrip] = []
    if not has_state and counts.remove:
        found.append(GuardTrip(
            "no-state-only-adds",
            f"there is no state, yet {_members(counts.remove)} would be removed: with no state "
            "segops only adds (was the state lost?)",
        ))  # fmt: skip
    if (
        change.settings_after is not None
        and counts.after == 0
        and lost
        and not safety.allow_empty_source
    ):
        found.append(GuardTrip(
            "empty-source",
            f"the source is empty: all {_members(lost)} would be removed "
            "(set safety.allow_empty_source to allow it)",
        ))  # fmt: skip
    if Action.CREATE in change.actions and counts.after == 0 and not safety.allow_empty_source:
        skipped = f" ({counts.skipped:,} bad rows were skipped)" if counts.skipped else ""
        found.append(GuardTrip(
            "empty-source",
            f"the source is empty{skipped}: the destination would be created with no members, "
            "which is almost always a broken export (set safety.allow_empty_source to allow it)",
        ))  # fmt: skip
    if counts.before and lost / counts.before > safety.max_removal_fraction:
        found.append(GuardTrip(
            "max-removal-fraction",
            f"{lost:,} of {counts.before:,} members ({lost / counts.before:.0%}) would be "
            f"removed, more than the {safety.max_removal_fraction:.0%} allowed",
        ))  # fmt: skip
    if safety.max_removals is not None and lost > safety.max_removals:
        found.append(GuardTrip(
            "max-removals",
            f"{_members(lost)} would be removed, more than the {safety.max_removals:,} allowed",
        ))  # fmt: skip
    return tuple(found)


def _members(count: int) -> str:
    return f"{count:,} member{'' if count == 1 else 's'}"


def _lost(change: DestinationChange) -> int:
    """Return how many members the destination loses: removes, or for a recreate the net loss.

    A recreate removes every member from the old place and adds them to the new one: what a
    reviewer cares about is how many do not come back.
    """
    counts = change.members
    if Action.RECREATE in change.actions:
        return max(0, counts.before - counts.after)
    return counts.remove


def check_overrides(
    plan: Plan, allowed: Sequence[str], plan_digest: str | None, reviewed: Plan | None = None
) -> None:
    """Refuse a plan whose tripped guards are not all overridden for this very plan.

    `allowed` holds `SEGMENT` or `SEGMENT@DIGEST` (a prefix of the plan file's sha256, at
    least 8 characters); `plan_digest` is that sha256, None when no saved plan is applied.
    An override that names no tripped segment is an error too: it must not linger in CI.
    `reviewed` is the saved plan when `plan` was recomputed on data that moved since the
    review: an override may name a segment tripped in either, and lets a change through
    only up to the members its reviewed change removed.

    Raises:
        UsageError: an override without a saved plan, for another plan, or for nothing.
        GuardError: a tripped change that no override names, or that removes more than
            the reviewed change its override was given for.
    """
    tripped = {c.segment for c in (*plan.tripped, *(reviewed.tripped if reviewed else ()))}
    names = set()
    for item in allowed:
        name, _, digest = item.partition("@")
        if plan_digest is None:
            raise UsageError(
                "--allow-removals needs a saved plan: run `segops plan -out FILE`, review it, "
                "then `segops apply FILE --allow-removals SEGMENT`"
            )
        if digest and (len(digest) < 8 or not plan_digest.startswith(digest.lower())):
            raise UsageError(
                f"--allow-removals {item}: that digest is not this plan's ({plan_digest[:12]})"
            )
        if name not in tripped:
            raise UsageError(f"--allow-removals {name}: no safety guard stops {name} in this plan")
        names.add(name)
    blocked = [c for c in plan.tripped if c.segment not in names]
    if blocked:
        lines = "\n".join(f"  - {c.address}: {g.message}" for c in blocked for g in c.guards)
        segments = " ".join(f"--allow-removals {s}" for s in sorted({c.segment for c in blocked}))
        raise GuardError(
            f"safety guards stop this plan:\n{lines}\n"
            "Review the plan; to apply it anyway, save it and name the segments: "
            f"`segops plan -out plan.segplan` then `segops apply plan.segplan {segments}`"
        )
    if reviewed is not None:
        _check_reviewed_removals(plan, reviewed)


def _check_reviewed_removals(plan: Plan, reviewed: Plan) -> None:
    """Refuse an overridden change that loses more members than the reviewed one did."""
    before = {c.address: _lost(c) for c in reviewed.changes}
    beyond = [c for c in plan.tripped if _lost(c) > before.get(c.address, 0)]
    if beyond:
        lines = "\n".join(
            f"  - {c.address}: the current data removes {_members(_lost(c))}, the reviewed plan "
            f"{before.get(c.address, 0):,}; {'; '.join(g.message for g in c.guards)}"
            for c in beyond
        )
        raise GuardError(
            "safety guards stop this plan: the data moved since review, and --allow-removals "
            f"covers only the removals that were reviewed:\n{lines}\n"
            "Make the plan again with `segops plan -out FILE`, review it, and apply that file."
        )
