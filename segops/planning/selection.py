"""Selection: plan or apply only some destinations.

`--segment GLOB` / `--exclude GLOB` pick segments by name, `--target GLOB` destinations by
address, `--changed-since REF` the segments whose manifest or source data changed. A
pattern that matches nothing is an error naming it: a selection must never silently plan
nothing (a typo in CI would otherwise pass as "No changes").
"""

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
    targets: tuple[str, ...] = ()  # address globs; empty: every destination of the segments

    def includes(self, segment: str) -> bool:
        if self.segments and not any(fnmatch.fnmatchcase(segment, g) for g in self.segments):
            return False
        if any(fnmatch.fnmatchcase(segment, g) for g in self.exclude):
            return False
        return self.changed is None or segment in self.changed

    def picks(self, address: str, segment: str) -> bool:
        """Return whether the destination at `address`, of `segment`, is selected."""
        if self.targets and not any(fnmatch.fnmatchcase(address, g) for g in self.targets):
            return False
        return self.includes(segment)


def make_selection(
    workspace: Workspace,
    segments: Iterable[str],
    exclude: Iterable[str],
    changed_since: str | None,
    applied: Iterable[str] = (),
    targets: Iterable[str] = (),
    applied_addresses: Iterable[str] = (),
) -> Selection:
    """Return the selection; `applied` names the segments in state (a deleted manifest's
    segment counts as changed), `applied_addresses` the destinations in state.

    Raises:
        UsageError: a --segment, --exclude or --target pattern that matches nothing.
    """
    segments, exclude, targets = tuple(segments), tuple(exclude), tuple(targets)
    applied = tuple(applied)
    known = {s.name for s in workspace.segments} | set(applied)
    addresses = {d.address for d in workspace.destinations} | set(applied_addresses)
    for option, patterns, names in (
        ("--segment", segments, known),
        ("--exclude", exclude, known),
        ("--target", targets, addresses),
    ):
        _check_matches(option, patterns, names)
    changed = None
    if changed_since is not None:
        paths = git_changes(Path(workspace.root), changed_since, workspace.data_files)
        changed = changed_segments(workspace, paths)
        present = {s.name for s in workspace.segments}
        changed |= {name for name in applied if name not in present}
    words = [f"--segment {g}" for g in segments] + [f"--exclude {g}" for g in exclude]
    words += [f"--target {g}" for g in targets]
    words += [f"--changed-since {changed_since}"] if changed_since is not None else []
    return Selection(segments, exclude, changed, " ".join(words), targets)


def _check_matches(option: str, patterns: tuple[str, ...], names: set[str]) -> None:
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            what = "destination address" if option == "--target" else "segment name"
            shown = ", ".join(sorted(names)[:10]) + (", …" if len(names) > 10 else "")
            raise UsageError(
                f"{option} {pattern}: matches no {what} in the manifests or the state"
                f" (known: {shown or 'none'})"
            )


def changed_segments(workspace: Workspace, changed: frozenset[str]) -> frozenset[str]:
    """Return the segments whose manifest or source data is among the `changed` paths."""
    if CONFIG_FILE in changed:
        return frozenset(s.name for s in workspace.segments)
    return frozenset(
        s.name for s in workspace.segments
        if s.manifest in changed or {s.source.path, s.source.query_file} & changed
    )  # fmt: skip


def git_changes(root: Path, ref: str, data_files: Iterable[str] = ()) -> frozenset[str]:
    """Return workspace-relative paths changed since `ref`: committed, staged, unstaged, new.

    A file of `data_files` that git tracks neither now nor at `ref` (an ignored export, say)
    counts as changed: git cannot tell what it held at `ref`.
    """
    diff = _git(root, "diff", "--name-only", "--relative", ref, "--")
    new = _git(root, "ls-files", "--others", "--exclude-standard")
    found = {line for line in (diff + new).splitlines() if line}
    data_files = tuple(data_files)
    if data_files:
        tracked = set(_git(root, "ls-files").splitlines())
        tracked |= set(_git(root, "ls-tree", "-r", "--name-only", ref, "--", ".").splitlines())
        found |= {path for path in data_files if path not in tracked}
    return frozenset(found)


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
