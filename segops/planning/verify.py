"""Compare a saved plan with the plan recomputed from the workspace and the state. Pure.

A saved plan is a claim; `segops apply FILE` recomputes the plan for the same segments
(same inputs and state give the same plan, byte for byte) and applies only when the two
agree in everything but the clock-dependent `eta`: addresses, settings, actions, counts,
delta digests (so the deltas' contents), base snapshots, attributes, operations, guards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from segops.errors import PlanError
from segops.model import Plan
from segops.planning.selection import Selection
from segops.render.json import plan_to_dict

# Depends on the clock and the quota ledger when the plan was made: display only.
_IGNORED = frozenset({"eta"})
_OPTION = re.compile(r"(?:^| )--(segment|exclude|changed-since) ")
_SHOWN = 120
_MISSING = object()


@dataclass(frozen=True, slots=True)
class SavedSelection:
    """The selection options a plan was made with, read back from its `selection` text."""

    segments: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    changed_since: str | None = None


def parse_selection(text: str, origin: str) -> SavedSelection:
    """Return the options in a plan's `selection` text (as segops.planning.selection writes it)."""
    if not text:
        return SavedSelection()
    parts = _OPTION.split(text)
    if parts[0]:
        raise PlanError(f"{origin}: selection {text[:_SHOWN]!r} is not one segops writes")
    found: dict[str, list[str]] = {"segment": [], "exclude": [], "changed-since": []}
    for option, value in zip(parts[1::2], parts[2::2], strict=True):
        found[option].append(value)
    if len(found["changed-since"]) > 1:
        raise PlanError(f"{origin}: selection {text[:_SHOWN]!r} names two --changed-since refs")
    since = found["changed-since"][0] if found["changed-since"] else None
    return SavedSelection(tuple(found["segment"]), tuple(found["exclude"]), since)


def expected_segments(saved: SavedSelection, known: Collection[str]) -> frozenset[str] | None:
    """Return the segments of `known` the selection picks; None when git decides it."""
    if saved.changed_since is not None:
        return None  # the ref may have moved since: the plan's own list is kept, checked below
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


def plan_differences(saved: Plan, fresh: Plan) -> list[str]:
    """Return every difference between a saved plan and the recomputed one, in plain words."""
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
            found += [
                f"{shown}: {key}: the plan says {_show(a)}, the workspace and state give {_show(b)}"
                for key, a, b in _field_differences(theirs[address], ours[address])
            ]
    return found


def _field_differences(
    theirs: Mapping[str, Any], ours: Mapping[str, Any]
) -> Iterator[tuple[str, Any, Any]]:
    flat_theirs, flat_ours = dict(_flatten(theirs)), dict(_flatten(ours))
    for key in sorted(flat_theirs.keys() | flat_ours.keys()):
        if key.split(".")[0] in _IGNORED:
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


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        value = [v.get("guard", v.get("path", "…")) for v in value]  # guards, setting changes
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 1]}…"
