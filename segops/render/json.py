"""The canonical, versioned JSON form of a plan (schemas/plan.schema.json).

This is the stable machine format; the human renderer reads the same dict. `summary`
is derived, for display only: `plan_from_dict` ignores it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from segops.errors import PlanError
from segops.model import (
    PLAN_FORMAT_VERSION,
    Action,
    DataPin,
    DeltaFile,
    DestinationChange,
    GuardTrip,
    InputFile,
    KeyEncoding,
    MemberCounts,
    Plan,
    Platform,
    SettingChange,
    Settings,
)

_COUNTS = ("before", "after", "add", "remove", "update", "skipped")


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": plan.format_version,
        "segops_version": plan.segops_version,
        "state": {"lineage": plan.lineage, "serial": plan.serial},
        "selection": plan.selection or None,
        "destroy": plan.destroy,
        "replace": list(plan.replace),
        "inputs": {
            "definitions": [{"path": f.path, "sha256": f.sha256} for f in plan.definitions],
            "data": [{"segment": p.segment, "source": p.source, "pin": p.pin} for p in plan.data],
        },
        "changes": [_change_to_dict(c) for c in plan.changes],
        "summary": summary(plan),
    }


def render_json(plan: Plan) -> str:
    """Return the plan as JSON text; the same plan always gives the same bytes."""
    return json.dumps(plan_to_dict(plan), indent=2, ensure_ascii=False) + "\n"


def summary(plan: Plan) -> dict[str, Any]:
    """Return the totals shown under a plan: destinations per action, members per operation."""
    actions = {a: 0 for a in ("create", "update", "recreate", "destroy", "move", "no-op")}
    for change in plan.changes:
        actions[change.action.value] += 1
    members = {
        op: sum(getattr(c.members, op) for c in plan.changes)
        for op in ("add", "remove", "update", "skipped")
    }
    return {
        "destinations": actions,
        "members": members,
        "moved": sum(1 for c in plan.changes if c.moved_from),
        "guards_tripped": len(plan.tripped),
    }


def _change_to_dict(change: DestinationChange) -> dict[str, Any]:
    delta = change.delta
    return {
        "address": change.address,
        "segment": change.segment,
        "connection": change.connection,
        "platform": change.platform.value,
        "action": change.action.value,
        "actions": [a.value for a in change.actions],
        "reason": change.reason,
        "moved_from": change.moved_from or None,
        "full": change.full,
        "notes": list(change.notes),
        "settings": {
            "before": _settings(change.settings_before),
            "after": _settings(change.settings_after),
        },
        "setting_changes": [
            {"path": s.path, "before": s.before, "after": s.after, "effect": s.effect}
            for s in change.setting_changes
        ],
        "members": {k: getattr(change.members, k) for k in _COUNTS},
        "key_encoding": change.encoding.value,
        "attributes": list(change.attributes),
        "base_snapshot": change.base or None,
        "operations": change.operations,
        "guards": [{"guard": g.guard, "message": g.message} for g in change.guards],
        "eta": change.eta or None,
        "delta": None
        if delta is None
        else {"file": delta.name, "sha256": delta.sha256, "rows": delta.rows},
    }


def _settings(settings: Settings | None) -> dict[str, Any] | None:
    return None if settings is None else dict(settings)


def check_format_version(data: Any, origin: str) -> None:
    """Refuse a plan document of a format_version this segops does not read."""
    version = data.get("format_version") if isinstance(data, Mapping) else None
    if version == PLAN_FORMAT_VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version < PLAN_FORMAT_VERSION:
        raise PlanError(
            f"{origin}: plan format_version {version} was written by an older segops; "
            "plans are short-lived: make the plan again with this segops (`segops plan -out FILE`)"
        )
    raise PlanError(
        f"{origin}: plan format_version {version!r:.40} is not supported "
        f"(this segops reads version {PLAN_FORMAT_VERSION}): make the plan with this segops"
    )


def plan_from_dict(data: Mapping[str, Any], origin: str) -> Plan:
    """Parse the dict form back into a Plan; `origin` names the file in errors."""
    check_format_version(data, origin)
    try:
        inputs = data["inputs"]
        return Plan(
            segops_version=str(data["segops_version"]),
            lineage=data["state"]["lineage"],
            serial=int(data["state"]["serial"]),
            definitions=tuple(
                InputFile(str(f["path"]), str(f["sha256"])) for f in inputs["definitions"]
            ),
            data=tuple(
                DataPin(str(p["segment"]), str(p["source"]), str(p["pin"])) for p in inputs["data"]
            ),
            changes=tuple(_change_from_dict(c) for c in data["changes"]),
            selection=str(data.get("selection") or ""),
            destroy=data["destroy"] is True,
            replace=tuple(str(a) for a in data["replace"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{origin}: malformed plan ({type(exc).__name__}: {exc})") from None


def _change_from_dict(raw: Mapping[str, Any]) -> DestinationChange:
    delta = raw["delta"]
    return DestinationChange(
        address=str(raw["address"]),
        segment=str(raw["segment"]),
        connection=str(raw["connection"]),
        platform=Platform(raw["platform"]),
        actions=tuple(Action(a) for a in raw["actions"]),
        settings_before=_settings_from(raw["settings"]["before"]),
        settings_after=_settings_from(raw["settings"]["after"]),
        setting_changes=tuple(
            SettingChange(str(s["path"]), s["before"], s["after"], str(s["effect"]))
            for s in raw["setting_changes"]
        ),
        members=MemberCounts(**{k: int(raw["members"][k]) for k in _COUNTS}),
        delta=None if delta is None else DeltaFile(str(delta["sha256"]), int(delta["rows"])),
        encoding=KeyEncoding(raw["key_encoding"]),
        reason=str(raw["reason"]),
        attributes=tuple(str(a) for a in raw["attributes"]),
        base=str(raw["base_snapshot"] or ""),
        operations=int(raw["operations"]),
        guards=tuple(GuardTrip(str(g["guard"]), str(g["message"])) for g in raw["guards"]),
        eta=str(raw["eta"] or ""),
        moved_from=str(raw["moved_from"] or ""),
        full=raw["full"] is True,
        notes=tuple(str(n) for n in raw["notes"]),
    )


def _settings_from(raw: Mapping[str, Any] | None) -> Settings | None:
    return None if raw is None else tuple(sorted(raw.items()))
