"""Selection: plan or apply only some segments (`--segment`, `--exclude`, `--changed-since`)."""

from __future__ import annotations

import fnmatch
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from segops.errors import UsageError
from segops.model import Workspace

CONFIG_FILE = "segops.yaml"


@dataclass(frozen=True, slots=True)
class Selection:
    segments: tuple[str, ...] = ()  # globs; empty: every segment
    exclude: tuple[str, ...] = ()  # globs
    changed: frozenset[str] | None = None  # segments changed since a git ref; None: no filter
    text: str = ""  # how the selection was asked for, shown in the plan

    def includes(self, segment: str) -> bool:
        if self.segments and not any(fnmatch.fnmatchcase(segment, g) for g in self.segments):
            return False
        if any(fnmatch.fnmatchcase(segment, g) for g in self.exclude):
            return False
        return self.changed is None or segment in self.changed


def make_selection(
    workspace: Workspace,
    segments: Iterable[str],
    exclude: Iterable[str],
    changed_since: str | None,
    applied: Iterable[str] = (),
) -> Selection:
    """Return the selection; `applied` names the segments in state (a deleted manifest's
    segment counts as changed)."""
    segments, exclude = tuple(segments), tuple(exclude)
    changed = None
    if changed_since is not None:
        changed = changed_segments(workspace, git_changes(Path(workspace.root), changed_since))
        present = {s.name for s in workspace.segments}
        changed |= {name for name in applied if name not in present}
    words = [f"--segment {g}" for g in segments] + [f"--exclude {g}" for g in exclude]
    words += [f"--changed-since {changed_since}"] if changed_since is not None else []
    return Selection(segments, exclude, changed, " ".join(words))


def changed_segments(workspace: Workspace, changed: frozenset[str]) -> frozenset[str]:
    """Return the segments whose manifest or source data is among the `changed` paths."""
    if CONFIG_FILE in changed:
        return frozenset(s.name for s in workspace.segments)
    return frozenset(
        s.name for s in workspace.segments
        if s.manifest in changed or {s.source.path, s.source.query_file} & changed
    )  # fmt: skip


def git_changes(root: Path, ref: str) -> frozenset[str]:
    """Return workspace-relative paths changed since `ref`: committed, staged, unstaged, new."""
    diff = _git(root, "diff", "--name-only", "--relative", ref, "--")
    new = _git(root, "ls-files", "--others", "--exclude-standard")
    return frozenset(line for line in (diff + new).splitlines() if line)


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise UsageError("--changed-since needs git, which is not installed") from None
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or "").strip().splitlines()
        raise UsageError(
            f"--changed-since: git {' '.join(args[:1])} failed: {reason[0] if reason else exc}"
        ) from None
    return done.stdout
