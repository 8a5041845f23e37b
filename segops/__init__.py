"""segops: Terraform for audience segments.

Public API: load a workspace, make a plan, render it, apply it. Names are imported on
first use (PEP 562), so `import segops.<module>` does not load the whole tool.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segops.config.workspace import load_workspace
    from segops.errors import (
        DestinationError,
        ManifestError,
        PlanError,
        SegopsError,
        SourceError,
        StalePlanError,
        StateError,
        StateLockedError,
        UsageError,
    )
    from segops.model import Action, DestinationChange, Plan, Workspace
    from segops.operations import make_plan, validate_workspace
    from segops.render.human import render_text
    from segops.render.json import plan_to_dict, render_json

    __version__: str

# public name -> the module that defines it
_EXPORTS = {
    "Action": "segops.model",
    "DestinationChange": "segops.model",
    "DestinationError": "segops.errors",
    "ManifestError": "segops.errors",
    "Plan": "segops.model",
    "PlanError": "segops.errors",
    "SegopsError": "segops.errors",
    "SourceError": "segops.errors",
    "StalePlanError": "segops.errors",
    "StateError": "segops.errors",
    "StateLockedError": "segops.errors",
    "UsageError": "segops.errors",
    "Workspace": "segops.model",
    "load_workspace": "segops.config.workspace",
    "make_plan": "segops.operations",
    "plan_to_dict": "segops.render.json",
    "render_json": "segops.render.json",
    "render_text": "segops.render.human",
    "validate_workspace": "segops.operations",
}

__all__ = [
    "Action",
    "DestinationChange",
    "DestinationError",
    "ManifestError",
    "Plan",
    "PlanError",
    "SegopsError",
    "SourceError",
    "StalePlanError",
    "StateError",
    "StateLockedError",
    "UsageError",
    "Workspace",
    "__version__",
    "load_workspace",
    "make_plan",
    "plan_to_dict",
    "render_json",
    "render_text",
    "validate_workspace",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from segops.version import version

        return version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "__version__"])
