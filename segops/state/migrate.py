"""Move a state to another store (`segops state migrate`), lineage and serial kept.

The caller holds both locks. Every entry of the source (state.json and its backup,
snapshots, the apply journal, quota ledgers, what --allow-new-state set aside) is copied
byte for byte into a target that must be empty, state.json last; the copy is then read
back through the target (digests, snapshots) before the source is retired with
`moved.json`, which makes every later use of it fail with where the state went. The
source's files stay, so going back is deleting moved.json. A kill midway leaves the
source as it was and a partial target, which the next migrate refuses to overwrite.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from segops._fs import private_dir
from segops.errors import StateError, UsageError
from segops.state import StateBackend
from segops.state.document import BACKUP, PENDING, STATE
from segops.state.model import State

_LAST = (BACKUP, PENDING, STATE)  # written after everything they refer to


def copy_state(source: StateBackend, target: StateBackend, scratch: Path) -> tuple[State, int]:
    """Copy `source` into the empty `target` and check the copy; return the state and count."""
    state = source.read()
    if state is None:
        raise StateError(f"{source.describe()}: there is no state to migrate")
    for sha in sorted(state.snapshot_digests()):  # refuse to spread a damaged state
        source.snapshot_path(sha)
    found = target.entries()
    if found:
        shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
        raise StateError(
            f"{target.describe()}: already holds a state or traces of one ({shown}); migrate "
            "moves a state only into an empty place. Pick another location (an S3 prefix, a "
            "folder), or empty that one if you are sure nothing there is needed"
        )
    names = source.entries()
    ordered = [n for n in names if n not in _LAST] + [n for n in _LAST if n in names]
    folder = private_dir(scratch / "migrate")
    for number, name in enumerate(ordered):
        path = folder / f"{number}.entry"
        source.export_to(name, path)
        target.import_from(name, path)
        path.unlink()
    copied = target.read()
    if copied is None or (copied.lineage, copied.serial, copied.destinations) != (
        state.lineage,
        state.serial,
        state.destinations,
    ):
        raise StateError(f"{target.describe()}: the copy does not read as the state copied")
    for sha in sorted(copied.snapshot_digests()):
        target.snapshot_path(sha)
    return state, len(ordered)


def moved_record(state: State, target: StateBackend, config: str) -> bytes:
    """Return moved.json for the source: where the state went, and the segops.yaml to use."""
    record = {
        "moved_to": target.describe(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "lineage": state.lineage,
        "serial": state.serial,
        "config": config,
        "pid": os.getpid(),
    }
    return (json.dumps(record, indent=2) + "\n").encode()


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*/?")
_URL = re.compile(r"https?://[^\s/?#@]+(?:[/?#]\S*)?")


@dataclass(frozen=True, slots=True)
class Target:
    """Where `segops state migrate` moves the state, as the options gave it."""

    backend: str  # local | s3
    path: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    def check(self, root: Path) -> None:
        """Raise UsageError unless the options name one place of the chosen backend."""
        s3_only = {"--bucket": self.bucket, "--prefix": self.prefix, "--region": self.region}
        s3_only["--endpoint-url"] = self.endpoint_url
        if self.backend == "local":
            given = [name for name, value in s3_only.items() if value is not None]
            if given:
                raise UsageError(f"{', '.join(given)}: only with --to s3")
            inside = (root / (self.path or ".segops")).resolve()
            if not inside.is_relative_to(root.resolve()):
                raise UsageError("--path: must stay inside the workspace")
            return
        if self.path is not None:
            raise UsageError("--path: only with --to local")
        if self.bucket is None or not _BUCKET.fullmatch(self.bucket):
            raise UsageError(
                "--bucket: give the S3 bucket name (3 to 63 lowercase letters, digits, '.' or '-')"
            )
        if self.prefix is not None and not _PREFIX.fullmatch(self.prefix):
            raise UsageError("--prefix: names of letters, digits, '.', '_' or '-' separated by '/'")
        if self.endpoint_url is not None and not _URL.fullmatch(self.endpoint_url):
            raise UsageError("--endpoint-url: an http(s) URL, without user:password@")

    def config(self) -> str:
        """Return the `state:` block of segops.yaml that names this place."""
        if self.backend == "local":
            return f"state:\n  backend: local\n  path: {self.path or '.segops'}"
        lines = ["state:", "  backend: s3", f"  bucket: {self.bucket}"]
        for key in ("prefix", "region", "endpoint_url"):
            value = getattr(self, key)
            if value is not None:
                lines.append(f"  {key}: {value}")
        return "\n".join(lines)
