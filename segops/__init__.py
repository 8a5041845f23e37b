"""segops: Terraform for audience segments.

Public API: load a workspace, make a plan, render it, apply it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("segops")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"

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
