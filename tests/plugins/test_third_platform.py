"""A third platform from a separately installed package: validate, plan and apply to it.

The package in tests/plugins/echo_platform/ is built and installed by pip into a temporary
folder; segops finds it through the `segops.destinations` entry point group, as a user's
own platform package would be found, and runs in a child process with that folder on
PYTHONPATH (so the rest of the test session never sees the platform).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_tree

PACKAGE = Path(__file__).parent / "echo_platform"

SEGOPS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
connections:
  lists:
    platform: echo
    folder: sent
  preview:
    platform: files
    target: mediarithmics
    path: out
"""
MANIFEST = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: fans}
spec:
  source:
    csv: {path: ../data/fans.csv}
  destinations:
    - connection: lists
      list: fans
      column: id
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Install the echo platform package into a folder of its own; return the folder."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "echo_platform"
    shutil.copytree(PACKAGE, source)  # the build writes beside the sources: not in the repo
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
            "--no-build-isolation", "--target", str(target), str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path_factory.mktemp("build"),
    )  # fmt: skip
    return target


def segops(site: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "segops", "-C", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
    )


def sent(root: Path) -> list[dict[str, str]]:
    lines = (root / "sent" / "fans.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_installed_platform_is_planned_and_applied(site: Path, tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "segops.yaml": SEGOPS_YAML,
            "segments/fans.yaml": MANIFEST,
            "data/fans.csv": "id\nu1\nu2\nu3\nu4\nu5\n",
        },
    )
    done = segops(site, tmp_path, "validate")
    assert done.returncode == 0, done.stderr
    planned = segops(site, tmp_path, "plan")
    assert planned.returncode == 0, planned.stderr
    assert "fans.lists" in planned.stdout and "+5" in planned.stdout
    applied = segops(site, tmp_path, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert sorted(r["key"] for r in sent(tmp_path)) == ["u1", "u2", "u3", "u4", "u5"]

    (tmp_path / "data" / "fans.csv").write_text("id\nu1\nu3\nu4\nu5\nu6\n")
    applied = segops(site, tmp_path, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    assert sent(tmp_path)[5:] == [{"op": "remove", "key": "u2"}, {"op": "add", "key": "u6"}]
    again = segops(site, tmp_path, "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    state = json.loads((tmp_path / ".segops" / "state.json").read_text())
    assert state["destinations"]["fans.lists"]["platform"] == "echo"
    assert state["destinations"]["fans.lists"]["member_count"] == 5


def test_the_platform_checks_its_own_keys(site: Path, tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "segops.yaml": SEGOPS_YAML.replace("    folder: sent\n", "    token_env: X\n"),
            "segments/fans.yaml": MANIFEST,
            "data/fans.csv": "id\nu1\n",
        },
    )
    done = segops(site, tmp_path, "validate")
    assert done.returncode == 1
    assert "connections.lists.token_env: unknown key 'token_env' for a echo connection" in (
        done.stderr
    )
    assert "connections.lists: missing required key 'folder'" in done.stderr


def test_destination_keys_of_the_platform_are_schema_checked(site: Path, tmp_path: Path) -> None:
    manifest = MANIFEST.replace("list: fans", "list: Fans")
    write_tree(
        tmp_path,
        {"segops.yaml": SEGOPS_YAML, "segments/fans.yaml": manifest, "data/fans.csv": "id\n"},
    )
    done = segops(site, tmp_path, "validate")
    assert done.returncode == 1
    assert "segments/fans.yaml:9: spec.destinations[0].list: 'Fans' does not match" in done.stderr


def test_keys_of_other_platforms_are_refused(site: Path, tmp_path: Path) -> None:
    manifest = MANIFEST + "      expiry_days: 3\n"
    write_tree(
        tmp_path,
        {"segops.yaml": SEGOPS_YAML, "segments/fans.yaml": manifest, "data/fans.csv": "id\n"},
    )
    done = segops(site, tmp_path, "validate")
    assert done.returncode == 1
    assert (
        "spec.destinations[0].expiry_days: expiry_days is for moengage destinations, "
        "and connection 'lists' targets echo" in done.stderr
    )


def test_without_the_package_the_platform_is_unknown(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"segops.yaml": SEGOPS_YAML, "segments/fans.yaml": MANIFEST, "data/f.csv": "id\n"},
    )
    done = subprocess.run(
        [sys.executable, "-m", "segops", "-C", str(tmp_path), "validate"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "connections.lists.platform" in done.stderr
    assert "echo" in done.stderr
