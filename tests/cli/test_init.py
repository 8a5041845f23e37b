"""`segops init`, and the warning about paths git would pick up (with a real `git init`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import mics_manifest, run, write_tree

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_init_writes_a_workspace_that_validates_plans_and_applies(tmp_path: Path) -> None:
    root = tmp_path / "new"
    code, out, err = run(root, "init")
    assert code == 0, err
    assert out.startswith("Wrote segops.yaml, manifests/example.yaml, .gitignore.")
    assert (root / ".gitignore").read_text().splitlines()[1:] == [".segops/", "out/", "*.segplan"]
    assert "# " in (root / "manifests/example.yaml").read_text()  # commented
    assert run(root, "validate")[1] == "Success! 1 segment and 1 destination are valid.\n"
    code, out, _ = run(root, "apply", "--auto-approve")
    assert code == 0 and "Apply complete! 1 destination applied." in out


def test_init_overwrites_nothing(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_tree(root, {"segops.yaml": "version: 1\n# mine\n"})
    code, out, err = run(root, "init")
    assert (code, out) == (1, "")
    assert "segops.yaml already exists" in err and "overwrites nothing" in err
    assert (root / "segops.yaml").read_text() == "version: 1\n# mine\n"
    assert not (root / "manifests").exists() and not (root / ".gitignore").exists()


def test_init_adds_only_missing_lines_to_an_existing_gitignore(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_tree(root, {".gitignore": "node_modules/\nout/"})
    code, out, _ = run(root, "init")
    assert code == 0 and "Added .segops/ *.segplan to .gitignore." in out
    lines = (root / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", "out/"] and lines[-2:] == [".segops/", "*.segplan"]


@needs_git
def test_init_in_a_git_repository_leaves_only_files_to_commit(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    assert run(root, "init")[0] == 0
    code, _, err = run(root, "plan", "-out", str(root / "p.segplan"))
    assert code == 0 and "Warning" not in err
    assert run(root, "apply", "--auto-approve")[0] == 0
    status = git(root, "status", "--porcelain", "--untracked-files=all").split()
    assert sorted(s for s in status if s != "??") == [
        ".gitignore",
        "manifests/example.yaml",
        "segops.yaml",
    ]


@needs_git
def test_plan_and_apply_warn_about_paths_git_would_pick_up(workspace: Path, tmp_path: Path) -> None:
    write_tree(workspace, {"segments/a.yaml": mics_manifest("a", "members: []")})
    git(workspace, "init", "-q")
    write_tree(workspace, {".gitignore": "out/\n"})
    code, _, err = run(workspace, "plan", "-out", str(workspace / "a.segplan"))
    assert code == 3  # the empty source: the warning comes first all the same
    warning = err.splitlines()[0]
    assert warning.startswith("Warning: git does not ignore .segops/, a.segplan:")
    assert "member identifiers" in warning and "out/" not in warning.split(":")[1]
    code, _, err = run(workspace, "apply", str(workspace / "a.segplan"))
    assert err.startswith("Warning: git does not ignore .segops/, a.segplan:")
    write_tree(workspace, {".gitignore": "out/\n.segops/\n*.segplan\n"})
    code, _, err = run(workspace, "plan", "-out", str(workspace / "a.segplan"))
    assert "Warning" not in err
    # a plan file outside the repository is none of its business
    code, _, err = run(workspace, "plan", "-out", str(tmp_path / "elsewhere.segplan"))
    assert "Warning" not in err


def test_no_warning_outside_a_git_repository(workspace: Path) -> None:
    write_tree(workspace, {"segments/a.yaml": mics_manifest("a", "members: []")})
    _, _, err = run(workspace, "plan")
    assert "Warning" not in err
