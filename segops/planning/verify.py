"""Compare a saved plan with the plan recomputed from the workspace and the state. Pure.

A saved plan is a claim; `segops apply FILE` recomputes the plan for the same segments
(same inputs and state give the same plan, byte for byte). Definitions are reviewed, data
refreshes: a plan whose definitions moved is refused; for a segment whose data moved, the
recomputed diff is applied instead of the reviewed one. The two plans must then agree in
everything but the clock-dependent `eta`: addresses, settings, actions, counts, delta
digests (so the deltas' contents), base snapshots, attributes, operations, guards; for a
segment whose data moved, in everything its definitions and the state decide (addresses,
settings and their changes, the actions they force, members before, base snapshots).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segops.errors import PlanError
from segops.model import Action, InputFile, MemberCounts, Plan
from segops.planning.selection import Selection
from segops.render.json import plan_to_dict

# Depends on the clock and the quota ledger when the plan was made: display only.
_IGNORED = frozenset({"eta"})
# Follow from the member diff: recomputed on the current data when a segment's data moved.
_FROM_DATA = frozenset(
    {
        "action",
        "delta",
        "guards",
        "operations",
        *(f"members.{k}" for k in ("after", "add", "remove", "update", "skipped")),
    }
)
# Actions that settings, manifests or the state decide, whatever the data says.
_DEFINED = frozenset(
    {Action.CREATE.value, Action.RECREATE.value, Action.DESTROY.value, Action.MOVE.value}
)
_OPTION = re.compile(r"(?:^| )--(segment|exclude|target|changed-since) ")
_SHOWN = 120
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Verified:
    """A saved plan recomputed: the plan to apply, and what data moved since the review."""

    plan: Plan
    moved: Mapping[str, Sequence[str]]  # segment -> its data sources that moved
    refreshes: tuple[str, ...]  # per destination of a moved segment: new and reviewed counts


@dataclass(frozen=True, slots=True)
class SavedSelection:
    """The selection options a plan was made with, read back from its `selection` text."""

    segments: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    changed_since: str | None = None
    targets: tuple[str, ...] = ()


def parse_selection(text: str, origin: str) -> SavedSelection:
    """Return the options in a plan's `selection` text (as segops.planning.selection writes it)."""
    if not text:
        return SavedSelection()
    parts = _OPTION.split(text)
    if parts[0]:
        raise PlanError(f"{origin}: selection {text[:_SHOWN]!r} is not one segops writes")
    found: dict[str, list[str]] = {"segment": [], "exclude": [], "target": [], "changed-since": []}
    for option, value in zip(parts[1::2], parts[2::2], strict=True):
        found[option].append(value)
    if len(found["changed-since"]) > 1:
        raise PlanError(f"{origin}: selection {text[:_SHOWN]!r} names two --changed-since refs")
    since = found["changed-since"][0] if found["changed-since"] else None
    return SavedSelection(
        tuple(found["segment"]), tuple(found["exclude"]), since, tuple(found["target"])
    )


def expected_segments(saved: SavedSelection, known: Collection[str]) -> frozenset[str] | None:
    """Return the segments of `known` the selection picks; None when git decides it."""
    if saved.changed_since is not None or saved.targets:
        # The ref may have moved since, targets pick addresses: the plan's own list is kept,
        # and every address in it is checked against the recomputed plan.
        return None
    selection = Selection(saved.segments, saved.exclude)
    return frozenset(name for name in known if selection.includes(name))


def segment_differences(plan: Plan, expected: frozenset[str] | None) -> list[str]:
    """Return why the plan's segments are not the ones its selection picks."""
    have = {c.segment for c in plan.changes}
    if expected is None:
        return []
    found = [f"segment {s}: the plan leaves it out" for s in sorted(expected - have)]
    extra = sorted(have - expected)
    found += [f"segment {s}: the plan's selection does not pick it" for s in extra]
    return found


def definition_changes(saved: Sequence[InputFile], current: Sequence[InputFile]) -> list[str]:
    """Return the definitions added, removed or changed since the plan was made."""
    planned = {f.path: f.sha256 for f in saved}
    now = {f.path: f.sha256 for f in current}
    found = []
    for path in sorted(planned.keys() | now.keys()):
        if path not in now:
            found.append(f"{_name(path)} was removed")
        elif path not in planned:
            found.append(f"{_name(path)} was added")
        elif planned[path] != now[path]:
            found.append(f"{_name(path)} changed")
    return found


def data_changes(saved: Plan, fresh: Plan) -> dict[str, list[str]]:
    """Return the segments of `fresh` whose data moved since `saved` was made, with what moved."""
    theirs: dict[str, dict[str, str]] = {}
    ours: dict[str, dict[str, str]] = {}
    for found, plan in ((theirs, saved), (ours, fresh)):
        for pin in plan.data:
            found.setdefault(pin.segment, {})[pin.source] = pin.pin
    moved = {}
    for segment in sorted({c.segment for c in fresh.changes}):  # names from the workspace
        a, b = theirs.get(segment, {}), ours.get(segment, {})
        sources = sorted(s for s in a.keys() | b.keys() if a.get(s) != b.get(s))
        if sources:
            moved[segment] = [_name(s) for s in sources]
    return moved


def refresh_lines(saved: Plan, fresh: Plan, moved: Collection[str]) -> list[str]:
    """Return, per destination of a segment in `moved`, its new counts beside the reviewed."""
    reviewed = {c.address: c.members for c in saved.changes}
    return [
        f"{c.address}: data changed since review: {_counts(c.members)} "
        f"(reviewed {_counts(reviewed.get(c.address, MemberCounts()))})"
        for c in fresh.changes
        if c.segment in moved
    ]


def _counts(members: MemberCounts) -> str:
    return f"+{members.add:,} ~{members.update:,} -{members.remove:,}"


def plan_differences(saved: Plan, fresh: Plan, moved: Collection[str] = ()) -> list[str]:
    """Return every difference between a saved plan and the recomputed one, in plain words.

    For the segments in `moved` (their data moved), only what definitions and the state
    decide is compared.
    """
    found = []
    if saved.segops_version != fresh.segops_version:
        found.append(
            f"the plan was made by segops {saved.segops_version[:_SHOWN]}, this is segops "
            f"{fresh.segops_version}"
        )
    theirs = {c["address"]: c for c in plan_to_dict(saved)["changes"]}
    ours = {c["address"]: c for c in plan_to_dict(fresh)["changes"]}
    for address in sorted(theirs.keys() | ours.keys()):
        shown = address[:_SHOWN]
        if address not in ours:
            found.append(f"{shown}: in the plan, but not a destination of the manifests or state")
        elif address not in theirs:
            found.append(f"{shown}: the plan leaves it out")
        else:
            refreshed = ours[address]["segment"] in moved
            found += [
                f"{shown}: {key}: the plan says {_show(a)}, the workspace and state give {_show(b)}"
                for key, a, b in _field_differences(theirs[address], ours[address], refreshed)
            ]
    return found


def mismatch(origin: str, problems: Sequence[str]) -> PlanError:
    """Return the error refusing a plan that differs from the recomputed one."""
    listed = "\n".join(f"  - {p}" for p in problems[:20])
    more = f"\n  ({len(problems) - 20} more)" if len(problems) > 20 else ""
    return PlanError(
        f"{origin}: the plan does not match what the workspace and the state give (was it "
        f"edited, or made by another segops?); nothing was applied:\n{listed}{more}\n"
        "Make the plan again with `segops plan -out FILE`, review it, and apply that file."
    )


def _field_differences(
    theirs: Mapping[str, Any], ours: Mapping[str, Any], refreshed: bool
) -> Iterator[tuple[str, Any, Any]]:
    flat_theirs, flat_ours = dict(_flatten(theirs)), dict(_flatten(ours))
    if refreshed:
        for flat in (flat_theirs, flat_ours):
            if isinstance(flat.get("actions"), list):
                flat["actions"] = sorted(a for a in flat["actions"] if a in _DEFINED)
    for key in sorted(flat_theirs.keys() | flat_ours.keys()):
        if key.split(".")[0] in _IGNORED:
            continue
        if refreshed and (key in _FROM_DATA or key.split(".")[0] in _FROM_DATA):
            continue
        a, b = flat_theirs.get(key, _MISSING), flat_ours.get(key, _MISSING)
        if a != b or type(a) is not type(b):
            yield key, a, b


def _flatten(value: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            yield from _flatten(item, f"{path}.")
        else:
            yield path, item


def _name(text: str) -> str:
    """Return a path or source for a message: on one line, and short (a plan is untrusted)."""
    shown = text if text.isprintable() else json.dumps(text)
    return shown if len(shown) <= _SHOWN else f"{shown[: _SHOWN - 1]}…"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        value = [v.get("guard", v.get("path", "…")) for v in value]  # guards, setting changes
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 1]}…"
