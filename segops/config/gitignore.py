"""Which paths holding member identifiers git would pick up in a workspace's repository.

The state folder, `files` outputs and plan files hold personal data: inside a git
repository each must be ignored. `unignored` asks git itself (`git check-ignore`), so
every rule applies (nested .gitignore files, .git/info/exclude, global excludes). Outside
a repository, or without git, nothing is reported.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from segops.model import Platform, Workspace

_TIMEOUT = 10.0


def member_paths(workspace: Workspace) -> list[Path]:
    """Return the workspace's folders that hold member identifiers (local state, outputs)."""
    root = Path(workspace.root)
    found = [] if workspace.state_s3 is not None else [root / workspace.state_path]
    for connection in workspace.connections:
        if connection.platform == Platform.FILES:
            found.append(root / str(connection.option("path", "out")))
    return found


def unignored(root: Path, folders: Iterable[Path], files: Iterable[Path] = ()) -> list[str]:
    """Return the paths (relative to the repository) git would not ignore, sorted.

    `folders` and `files` may not exist yet; paths outside the repository are left out.
    """
    top = _toplevel(root)
    if top is None:
        return []
    wanted: dict[str, str] = {}
    for path, suffix in [*((f, "/") for f in folders), *((f, "") for f in files)]:
        resolved = path.resolve()
        if resolved.is_relative_to(top) and resolved != top:
            relative = resolved.relative_to(top).as_posix() + suffix
            wanted[relative] = relative
    if not wanted:
        return []
    try:
        done = subprocess.run(
            ["git", "-C", str(top), "check-ignore", "--stdin"],
            input="".join(f"{p}\n" for p in wanted),
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode not in (0, 1):  # 128: git failed; say nothing rather than guess
        return []
    ignored = set(done.stdout.splitlines())
    return sorted(p for p in wanted if p not in ignored)


def _toplevel(root: Path) -> Path | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return Path(done.stdout.strip()).resolve()
