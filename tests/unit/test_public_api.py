"""The public API of the segops package: what `__all__` promises, and that it resolves."""

from __future__ import annotations

import subprocess
import sys

import segops

EXPECTED = [
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


def test_all_is_the_public_api() -> None:
    assert segops.__all__ == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in segops.__all__:
        assert getattr(segops, name) is not None, name
    assert segops.load_workspace.__module__ == "segops.config.workspace"


def test_importing_a_module_does_not_load_the_whole_tool() -> None:
    """`import segops.model` stays light: no DuckDB, HTTP client or schema validator."""
    code = (
        "import sys, segops.model, segops.errors\n"
        "heavy = [m for m in ('duckdb', 'httpx', 'jsonschema', 'segops.operations') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
