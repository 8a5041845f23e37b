"""`segops apply --json`: real output, against the emulated platforms, valid against the
documented schema (schemas/apply-events.schema.json), line by line."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tests.conftest import mics_manifest, run, write_tree
from tests.crash.harness import ENV, platforms
from tests.crash.workspace import UNIVERSE, Desired, email_hash

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schemas" / "apply-events.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
VARIANTS = {v["properties"]["type"]["const"]: Draft202012Validator(v) for v in SCHEMA["oneOf"]}


def events_of(stdout: str) -> list[dict[str, Any]]:
    """Return the events of an output; every line must be one valid event."""
    events = []
    for line in stdout.splitlines():
        event = json.loads(line)
        variant = VARIANTS[event["type"]]  # its own variant first: clearer errors
        errors = [f"{e.json_path}: {e.message}" for e in variant.iter_errors(event)]
        assert errors == [], f"{line}\n{errors}"
        assert VALIDATOR.is_valid(event)
        events.append(event)
    assert events and events[-1]["type"] == "result"
    assert [e["type"] for e in events].count("result") == 1
    return events


def apply_json(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "segops", "-C", str(root), "apply", "--json", *args],
        env={**os.environ, **ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


def test_the_schema_is_valid_and_closed() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    for variant in SCHEMA["oneOf"]:
        assert variant["additionalProperties"] is False and "description" in variant
        assert set(variant["required"]) == set(variant["properties"])


def test_apply_json_against_the_platforms(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with platforms() as (mics, moe):
        desired = Desired()
        desired.change("create", "create", random.Random(1))
        desired.write(root, mics.base_url, moe.base_url)
        code, out, err = apply_json(root, "--auto-approve")
        moe.wait_idle()
    assert code == 0, err
    events = events_of(out)
    assert events[0]["type"] == "plan"
    planned = {c["address"] for c in events[0]["changes"]}
    operations = [e for e in events if e["type"] == "operation"]
    by_address = {e["address"] for e in operations}
    assert {"trial_mics.mics", "trial_moe.moe"} <= by_address
    mics_statuses = [e["status"] for e in operations if e["address"] == "trial_mics.mics"]
    assert {"intent", "accepted", "confirmed"} <= set(mics_statuses)
    executions = {e["details"].get("execution_id") for e in operations} - {None}
    assert executions, "accepted executions name their id"
    destinations = {e["address"]: e for e in events if e["type"] == "destination"}
    assert set(destinations) == planned
    assert all(d["status"] == "done" for d in destinations.values())
    result = events[-1]
    assert (result["status"], result["exit_code"]) == ("applied", 0)
    assert result["destinations"] == {"applied": len(planned), "failed": 0, "not_started": 0}
    # No member identifier, no secret, no URL in any event
    for email in UNIVERSE:
        assert email not in out and email_hash(email) not in out
    assert ENV["TRIAL_MICS_TOKEN"] not in out and "http://" not in out
    assert err == ""


def test_a_failed_destination_and_its_exit_code(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with platforms() as (mics, moe):
        desired = Desired()
        desired.change("create", "create", random.Random(2))
        desired.write(root, mics.base_url, moe.base_url)
        code, out, _ = apply_json(root, "--auto-approve", env={"TRIAL_MOE_KEY": "wrong-key-0"})
    assert code == 1
    events = events_of(out)
    failed = [e for e in events if e["type"] == "destination" and e["status"] == "failed"]
    assert [e["address"] for e in failed] == ["trial_moe.moe"]
    assert (events[-1]["status"], events[-1]["exit_code"]) == ("failed", 1)


def test_errors_and_refusals_end_with_a_result(workspace: Path) -> None:
    write_tree(workspace, {"segments/a.yaml": mics_manifest("a", "members: []")})
    code, out, err = apply_json(workspace, "--auto-approve")
    assert code == 3 and "Refused:" in err
    plan, result = events_of(out)
    assert plan["type"] == "plan" and plan["summary"]["guards_tripped"] == 1
    assert (result["status"], result["exit_code"]) == ("refused", 3)
    code, out, err = apply_json(workspace)
    assert code == 1 and err.startswith("Usage error: --json cannot ask")
    assert events_of(out)[-1]["status"] == "error"
    (workspace / "segops.yaml").write_text("version: 1\nconnections: {\n")
    code, out, _ = apply_json(workspace, "--auto-approve")
    assert code == 1
    (result,) = events_of(out)
    assert result["status"] == "error" and "invalid YAML" in result["message"]


def test_nothing_to_do(workspace: Path) -> None:
    manifest = mics_manifest("a", "members: [{email_hash: %s}]" % ("a" * 64))
    write_tree(workspace, {"segments/a.yaml": manifest})
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    code, out, _ = apply_json(workspace, "--auto-approve")
    assert code == 0
    plan, result = events_of(out)
    assert plan["changes"] == [] and result["status"] == "nothing_to_do"
