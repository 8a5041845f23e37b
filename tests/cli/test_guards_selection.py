"""Safety guards and their plan-bound overrides; selection of segments, with a real git repo."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from segops.state.local import LocalStateStore
from tests.conftest import mics_manifest, run, write_tree


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = [h(f"user{i}@example.com") for i in range(20)]


def manifest(name: str, extra: str = "") -> str:
    return mics_manifest(name, f"csv: {{path: ../data/{name}.csv}}{extra}")


def members(root: Path, name: str, hashes: list[str]) -> None:
    write_tree(root, {f"data/{name}.csv": "email_hash\n" + "".join(f"{x}\n" for x in hashes)})


@pytest.fixture
def applied(workspace: Path) -> Path:
    """A workspace with two segments of 20 members each, applied."""
    for name in ("cart", "vip"):
        write_tree(workspace, {f"segments/{name}.yaml": manifest(name)})
        members(workspace, name, HASHES)
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    return workspace


def serial(root: Path) -> int:
    state = LocalStateStore(root / ".segops").read()
    return state.serial if state else 0


def test_an_emptied_source_trips_a_guard_and_apply_refuses(applied: Path, tmp_path: Path) -> None:
    members(applied, "cart", [])
    code, out, _ = run(applied, "plan")
    assert code == 3
    assert "stopped by safety guard empty-source: the source is empty: all 20 members" in out
    before = serial(applied)
    code, _, err = run(applied, "apply", "--auto-approve")
    assert code == 3 and "safety guards stop this plan" in err
    assert serial(applied) == before
    # Only the explicit override on the reviewed, saved plan lets it through.
    saved = tmp_path / "p.segplan"
    assert run(applied, "plan", "-out", str(saved))[0] == 3
    assert run(applied, "apply", str(saved))[0] == 3
    code, _, err = run(applied, "apply", str(saved), "--allow-removals", "cart")
    assert code == 0, err
    assert run(applied, "plan", "--detailed-exitcode")[0] == 0


def test_removing_more_than_the_fraction_trips(applied: Path) -> None:
    members(applied, "vip", HASHES[:14])  # 6 of 20 = 30% > 25%
    plan = json.loads(run(applied, "plan", "--format", "json")[1])
    (vip,) = [c for c in plan["changes"] if c["segment"] == "vip"]
    assert [g["guard"] for g in vip["guards"]] == ["max-removal-fraction"]
    members(applied, "vip", HASHES[:16])  # 4 of 20 = 20%: allowed
    assert run(applied, "plan")[0] == 0


def test_a_manifest_overrides_the_workspace_rules(applied: Path) -> None:
    write_tree(
        applied,
        {
            "segments/vip.yaml": manifest(
                "vip", "\n  safety: {max_removal_fraction: 0.5, max_removals: 3}"
            )
        },
    )
    members(applied, "vip", HASHES[:14])  # 6 removals: under 50% but over 3
    plan = json.loads(run(applied, "plan", "--format", "json")[1])
    (vip,) = [c for c in plan["changes"] if c["segment"] == "vip"]
    assert [g["guard"] for g in vip["guards"]] == ["max-removals"]


def test_destroy_is_a_removal_too(applied: Path) -> None:
    (applied / "segments/vip.yaml").unlink()
    code, out, _ = run(applied, "plan")
    assert code == 3 and "20 of 20 members (100%)" in out


def test_override_is_bound_to_one_plan(applied: Path, tmp_path: Path) -> None:
    members(applied, "cart", [])
    saved = tmp_path / "p.segplan"
    run(applied, "plan", "-out", str(saved))
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    # Not without a saved plan, not for a segment the plan does not stop, not another digest.
    assert run(applied, "apply", "--auto-approve", "--allow-removals", "cart")[0] == 1
    assert (
        run(applied, "apply", str(saved), "--allow-removals", "cart", "--allow-removals", "vip")[0]
        == 1
    )
    assert run(applied, "apply", str(saved), "--allow-removals", "cart@deadbeef00")[0] == 1
    assert serial(applied) == 2
    assert run(applied, "apply", str(saved), "--allow-removals", f"cart@{digest[:12]}")[0] == 0


def test_selection_by_glob_and_exclude(applied: Path) -> None:
    members(applied, "cart", HASHES[:18])
    members(applied, "vip", HASHES[:19])
    plan = json.loads(run(applied, "plan", "--format", "json", "--segment", "c*")[1])
    assert [c["segment"] for c in plan["changes"]] == ["cart"]
    assert plan["selection"] == "--segment c*"
    plan = json.loads(run(applied, "plan", "--format", "json", "--exclude", "cart")[1])
    assert [c["segment"] for c in plan["changes"]] == ["vip"]
    # An unselected segment is left alone, not destroyed.
    assert run(applied, "apply", "--auto-approve", "--segment", "cart")[0] == 0
    plan = json.loads(run(applied, "plan", "--format", "json")[1])
    assert {c["segment"]: c["action"] for c in plan["changes"]} == {
        "cart": "no-op",
        "vip": "update",
    }


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_changed_since_a_git_ref(applied: Path) -> None:
    git(applied, "init", "-q")
    git(applied, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git(applied, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base")
    members(applied, "vip", HASHES[:19])  # a source change
    write_tree(applied, {"segments/new.yaml": manifest("new")})  # an untracked manifest
    members(applied, "new", HASHES[:3])
    plan = json.loads(run(applied, "plan", "--format", "json", "--changed-since", "HEAD")[1])
    assert sorted(c["segment"] for c in plan["changes"]) == ["new", "vip"]
    (applied / "segments/cart.yaml").unlink()  # a deleted manifest: its destroy is selected
    plan = json.loads(run(applied, "plan", "--format", "json", "--changed-since", "HEAD")[1])
    assert sorted(c["segment"] for c in plan["changes"]) == ["cart", "new", "vip"]
    code, _, err = run(applied, "plan", "--changed-since", "no-such-ref")
    assert code == 1 and "--changed-since" in err
