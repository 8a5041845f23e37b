"""The local state store: `.segops/` in the workspace.

Layout::

    .segops/state.json           current state (format_version, lineage, serial, destinations)
    .segops/state.json.backup    the state.json it replaced, kept on every write
    .segops/snapshots/<sha256>.parquet   applied members, one file per digest
    .segops/lock.json            present while a process holds the lock

Writes go to a temporary file in the same folder, are fsynced, then renamed over the
old file, so a reader sees the old state or the new one, never a torn one.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from segops._fs import atomic_write, fsync_path
from segops.errors import StateError, StateLockedError
from segops.state.model import LockInfo, State, state_from_dict, state_to_dict


class LocalStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_file = path / "state.json"
        self.backup_file = path / "state.json.backup"
        self.snapshots = path / "snapshots"
        self.lock_file = path / "lock.json"
        self._cached: tuple[tuple[int, int, int], State | None] | None = None

    # -- reading ---------------------------------------------------------------------

    def read(self) -> State | None:
        """Return the state on disk; parsed once per version of the file (by its stat)."""
        try:
            info = self.state_file.stat()
        except FileNotFoundError:
            return None
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, _read_state(self.state_file))
        return self._cached[1]

    def snapshot_path(self, sha256: str) -> Path:
        path = self.snapshots / f"{sha256}.parquet"
        if not path.is_file():
            raise StateError(f"{path}: snapshot named in state.json is missing")
        return path

    # -- writing ---------------------------------------------------------------------

    def write(self, state: State) -> State:
        current = self.read()
        if current is not None and current.lineage != state.lineage:
            raise StateError(
                f"{self.state_file}: lineage {current.lineage} differs from the state being "
                f"written ({state.lineage}); refusing to overwrite another workspace's state"
            )
        new = replace(state, serial=(current.serial if current else 0) + 1)
        self.path.mkdir(parents=True, exist_ok=True)
        if self.state_file.exists():
            atomic_write(self.backup_file, self.state_file.read_bytes())
        atomic_write(self.state_file, _state_text(new).encode())
        # The backup now holds `current`: keep what either refers to.
        self._collect_snapshots(new, current)
        return new

    def put_snapshot(self, path: Path, sha256: str) -> None:
        self.snapshots.mkdir(parents=True, exist_ok=True)
        final = self.snapshots / f"{sha256}.parquet"
        if final.exists():
            return
        tmp = self.snapshots / f".{sha256}.{os.getpid()}.tmp"
        shutil.copyfile(path, tmp)
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(self.snapshots)

    def _collect_snapshots(self, state: State, backup: State | None) -> None:
        """Delete snapshots that neither state.json nor its backup refer to."""
        keep = set(state.snapshot_digests())
        if backup is not None:
            keep |= backup.snapshot_digests()
        if not self.snapshots.is_dir():
            return
        for path in self.snapshots.glob("*.parquet"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)

    # -- locking -----------------------------------------------------------------------

    def lock(self, operation: str) -> LockInfo:
        self.path.mkdir(parents=True, exist_ok=True)
        info = LockInfo(
            id=str(uuid.uuid4()),
            operation=operation,
            who=f"{_user()}@{socket.gethostname()}",
            pid=os.getpid(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        try:
            fd = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise StateLockedError(self._locked_message()) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(info.to_dict(), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        return info

    def unlock(self, lock_id: str) -> None:
        held = self.lock_info()
        if held is None:
            raise StateError(f"{self.lock_file}: no lock is held")
        if held.id != lock_id:
            raise StateError(f"{self.lock_file}: the lock is held with ID {held.id}, not {lock_id}")
        self.lock_file.unlink()

    def lock_info(self) -> LockInfo | None:
        try:
            return LockInfo.from_dict(json.loads(self.lock_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.lock_file}: unreadable lock file ({exc})") from None

    def _locked_message(self) -> str:
        held = self.lock_info()
        if held is None:
            return f"{self.lock_file}: the state is locked"
        gone = ""
        if held.who.endswith(f"@{socket.gethostname()}") and not _alive(held.pid):
            gone = (
                f"  (process {held.pid} is no longer running on this machine: the lock is stale)\n"
            )
        return (
            f"the state is locked by another segops run\n{gone}"
            f"  Lock ID:   {held.id}\n  Operation: {held.operation}\n  Who:       {held.who}\n"
            f"  PID:       {held.pid}\n  Created:   {held.created}\n"
            f"If that run is gone, release the lock with: segops force-unlock {held.id}"
        )


def _state_text(state: State) -> str:
    """Return state.json's text: indented at the top, one line per destination.

    One line per destination keeps diffs readable and lets json's C encoder do the work:
    the pure-Python indenting encoder made every write cost O(destinations) seconds.
    """
    data = state_to_dict(state)
    entries = data.pop("destinations")
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in data.items()]
    body = ",\n".join(
        f"    {json.dumps(a)}: {json.dumps(e, sort_keys=False)}" for a, e in entries.items()
    )
    lines.append('  "destinations": {' + (f"\n{body}\n  " if body else "") + "}")
    return "{\n" + "\n".join(lines) + "\n}\n"


def _read_state(path: Path) -> State | None:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: not a JSON object")
    return state_from_dict(data, str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
