"""The terminal view of a plan, in Terraform's spirit, built from the canonical JSON form.

Counts only: no member identifier ever appears here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from segops._text import plural
from segops.model import Plan
from segops.render.json import plan_to_dict

_SYMBOL = {
    "create": "  +",
    "update": "  ~",
    "recreate": "-/+",
    "destroy": "  -",
    "move": "   ",
    "no-op": "   ",
}
_VERB = {
    "create": "will be created",
    "update": "will be updated in place",
    "recreate": "must be recreated",
    "destroy": "will be destroyed",
}
_EFFECT_NOTE = {"recreate": "   # forces recreate", "refresh": "   # every member is sent again"}


def render_text(plan: Plan) -> str:
    """Return the plan as text for a terminal or a CI log."""
    data = plan_to_dict(plan)
    changes = [c for c in data["changes"] if c["action"] != "no-op"]
    if not changes:
        return _no_changes(data)
    blocks = ["segops will perform the following actions:\n"]
    if data["selection"]:
        what = "destinations" if "--target" in data["selection"] else "segments"
        blocks[0] += f"(only the {what} selected by {data['selection']})\n"
    if data["destroy"]:
        blocks[0] += "(destroy requested: every selected destination in the state is destroyed)\n"
    if data["replace"]:
        blocks[0] += f"(sent whole again, as requested: {', '.join(data['replace'])})\n"
    blocks += [_block(c) for c in changes]
    blocks.append(_totals(data["summary"]))
    stopped = sorted({c["segment"] for c in changes if c["guards"]})
    if stopped:
        allow = " ".join(f"--allow-removals {s}" for s in stopped)
        blocks.append(
            f"⛔ Safety guards stop {plural(data['summary']['guards_tripped'], 'change')}: "
            "apply will refuse this plan.\n   After review, apply it with: "
            f"segops apply <saved plan> {allow}\n"
        )
    return "\n".join(blocks)


def _block(change: Mapping[str, Any]) -> str:
    action = change["action"]
    lines = []
    if change["moved_from"]:
        lines.append(f"  # {change['moved_from']} has moved to {change['address']}")
    if action in _VERB:
        head = f"  # {change['address']} {_VERB[action]}"
        if change["reason"]:
            head += f": {change['reason']}"
        lines.append(head)
    lines.append(
        f"{_SYMBOL[action]} {change['address']}  ({change['platform']} via {change['connection']})"
    )
    lines += [_setting_line(s) for s in change["setting_changes"]]
    lines.append(f"      members: {_counts(change['members'])}")
    if change["operations"]:
        when = f", quota allows the last {change['eta']}" if change["eta"] else ""
        lines.append(f"      operations: {change['operations']}{when}")
    for guard in change["guards"]:
        lines.append(f"      ⛔ stopped by safety guard {guard['guard']}: {guard['message']}")
    skipped = change["members"]["skipped"]
    if skipped:
        lines.append(f"      ! {plural(skipped, 'bad source row')} skipped (on_bad_rows: skip)")
    lines += [f"      ! {note}" for note in change["notes"]]
    return "\n".join(lines) + "\n"


def _setting_line(setting: Mapping[str, Any]) -> str:
    note = _EFFECT_NOTE.get(setting["effect"], "")
    before, after = setting["before"], setting["after"]
    if before is None:
        return f"      + {setting['path']}: {_value(after)}{note}"
    if after is None:
        return f"      - {setting['path']}: {_value(before)}{note}"
    return f"      ~ {setting['path']}: {_value(before)} → {_value(after)}{note}"


def _counts(members: Mapping[str, int]) -> str:
    parts = [
        f"{sign}{members[op]:,}"
        for sign, op in (("+", "add"), ("~", "update"), ("-", "remove"))
        if members[op]
    ]
    change = " ".join(parts) or "no member change"
    return f"{change}  ({members['before']:,} → {members['after']:,})"


def _totals(summary: Mapping[str, Any]) -> str:
    d, m = summary["destinations"], summary["members"]
    moved = f", {summary['moved']} to move" if summary["moved"] else ""
    return (
        f"Plan: {d['create']} to create, {d['update']} to update, {d['recreate']} to recreate, "
        f"{d['destroy']} to destroy{moved}.\n"
        f"Members: +{m['add']:,} to add, ~{m['update']:,} to update, -{m['remove']:,} to remove.\n"
    )


def _no_changes(data: Mapping[str, Any]) -> str:
    """Say the state matches: segops reads no platform, so it cannot say the platforms do."""
    total = sum(c["members"]["after"] for c in data["changes"])
    count = len(data["changes"])
    text = (
        "No changes. The state matches the manifests "
        f"({plural(count, 'destination')}, {plural(total, 'member')}).\n"
    )
    for change in data["changes"]:
        text += "".join(f"  ! {change['address']}: {note}\n" for note in change["notes"])
    return text


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
