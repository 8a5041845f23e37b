"""The local state store: `.segops/` in the workspace.

Layout::

    .segops/state.json           current state (format_version, lineage, serial, destinations)
    .segops/state.json.backup    the state.json it replaced, kept on every write
    .segops/snapshots/<sha256>.parquet   applied members, one file per digest
    .segops/new-state.json       the lineage of a first apply that has not written state yet
    .segops/lock.json            present while a process holds the lock (lockfile.py)
    .segops/abandoned/<time>/    traces of a lost state, set aside by --allow-new-state
    .segops/journal.jsonl, moengage-ledger-*.json   kept by apply and the platforms

Files are 0600 in 0700 folders. Writes go to a temporary file in the same folder, are
fsynced, then renamed over the old file, so a reader sees the old state or the new one.
state.json's digests are checked on every read (segops.state.model), and a snapshot's
bytes against its digest before it is used. state.json is never started afresh while
anything else is in the folder: that is a lost state, refused with how to recover it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from segops._fs import (
    PRIVATE_FILE,
    atomic_write,
    fsync_path,
    private_dir,
    remove_stale_temps,
)
from segops.errors import LostStateError, StateError
from segops.state.lockfile import LockFile
from segops.state.model import RECOVER_HINT, LockInfo, State, state_from_dict, state_to_dict
from segops.state.snapshots import SnapshotFiles

# Folder entries that are not traces of an earlier state.
_NOT_TRACES = frozenset({"abandoned", "tmp"})
# Records of the platforms' own quotas: still true after a state is lost, so they stay.
_KEPT_ON_ABANDON = re.compile(r".*-ledger-.*\.json")


class LocalStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_file = path / "state.json"
        self.backup_file = path / "state.json.backup"
        self.pending_file = path / "new-state.json"
        self.snapshots = path / "snapshots"
        self.lock_file = path / "lock.json"
        self._lock = LockFile(self.lock_file)
        self._files = SnapshotFiles(self.snapshots)
        self._cached: tuple[tuple[int, int, int], State | None] | None = None

    # -- reading ---------------------------------------------------------------------

    def read(self) -> State | None:
        """Return the state on disk; parsed once per version of the file (by its stat).

        Raises:
            LostStateError: state.json is missing but the folder holds traces of a state.
            StateError: state.json cannot be read, or fails its digests.
        """
        try:
            info = self.state_file.stat()
        except FileNotFoundError:
            return self._without_state()
        except OSError as exc:
            raise StateError(f"{self.state_file}: cannot read: {exc.strerror}") from None
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, _read_state(self.state_file))
        return self._cached[1]

    def snapshot_path(self, sha256: str) -> Path:
        """Return the path of the snapshot with this digest, its bytes checked against it."""
        return self._files.verified(sha256)

    def traces(self) -> tuple[str, ...]:
        """Return the entries of the state folder that show an earlier state existed."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the state folder: {exc.strerror}") from None
        ignored = set(_NOT_TRACES) | {self.pending_file.name}
        if self._lock.held is not None:
            ignored.add(self.lock_file.name)
        return tuple(sorted(n for n in names if n not in ignored))

    def _without_state(self) -> State | None:
        pending = self._pending()
        if pending is not None:
            return pending
        traces = self.traces()
        if traces == (self.lock_file.name,):
            # A run took the lock and wrote nothing yet (a first apply records itself with
            # `begin` before it sends anything): say who holds it and how to release it.
            raise LostStateError(
                f"{self.state_file} is missing and {self.path} holds only a lock: "
                f"{self._lock.locked_message()}"
            )
        if traces:
            raise LostStateError(_lost_message(self.state_file, traces))
        return None

    def _pending(self) -> State | None:
        try:
            data = json.loads(self.pending_file.read_text(encoding="utf-8"))
            return State(str(data["lineage"]), 0, str(data["segops_version"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{self.pending_file}: unreadable ({type(exc).__name__}); it records the lineage "
                "of a first apply that was interrupted: if no state was ever written, delete it"
            ) from None

    # -- writing ---------------------------------------------------------------------

    def begin(self, state: State) -> State:
        """Record that a first apply of `state.lineage` starts; return it as the state."""
        if self.read() is not None:
            raise StateError(f"{self.state_file}: a state exists already; nothing to begin")
        private_dir(self.path)
        record = {"lineage": state.lineage, "segops_version": state.segops_version}
        atomic_write(self.pending_file, json.dumps(record).encode(), PRIVATE_FILE)
        return replace(state, serial=0, destinations=(), resources=())

    def write(self, state: State) -> State:
        current = self.read()
        if current is not None and current.lineage != state.lineage:
            raise StateError(
                f"{self.state_file}: lineage {current.lineage} differs from the state being "
                f"written ({state.lineage}); refusing to overwrite another workspace's state"
            )
        new = replace(state, serial=(current.serial if current else 0) + 1)
        private_dir(self.path)
        if self.state_file.exists():
            atomic_write(self.backup_file, self.state_file.read_bytes(), PRIVATE_FILE)
        atomic_write(self.state_file, _state_text(new).encode(), PRIVATE_FILE)
        self.pending_file.unlink(missing_ok=True)
        # The backup now holds `current`: keep what either refers to.
        self._files.collect(new.snapshot_digests() | _digests(current))
        return new

    def put_snapshot(self, path: Path, sha256: str) -> None:
        self._files.put(path, sha256)

    def abandon(self, state: State) -> State:
        """Set the traces of a lost state aside in abandoned/<time>/ and begin `state`."""
        if self.state_file.exists():
            raise StateError(f"{self.state_file}: the state exists; there is nothing to abandon")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = private_dir(self.path / "abandoned" / f"{stamp}-{os.getpid()}")
        for name in self.traces():
            if name != self.lock_file.name and not _KEPT_ON_ABANDON.fullmatch(name):
                os.replace(self.path / name, aside / name)
        fsync_path(self.path)
        self._cached = None
        return self.begin(state)

    def recover(self, force: bool = False) -> State:
        """Make state.json.backup the current state; keep a damaged state.json beside it.

        The backup is the state before the last write; it is written with a serial past the
        lost one's (backup + 2), so no serial (nor files output folder) names two states.
        """
        if not self.backup_file.is_file():
            raise StateError(f"{self.backup_file}: there is no backup to recover from")
        backup = _read_state(self.backup_file)
        assert backup is not None
        for entry in backup.destinations:
            self.snapshot_path(entry.snapshot.sha256)
        if self.state_file.exists():
            if not force:
                self._check_damaged()
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            os.replace(self.state_file, self.path / f"state.json.damaged-{stamp}")
        recovered = replace(backup, serial=backup.serial + 2)
        atomic_write(self.state_file, _state_text(recovered).encode(), PRIVATE_FILE)
        self.pending_file.unlink(missing_ok=True)
        self._cached = None
        return recovered

    def _check_damaged(self) -> None:
        try:
            current = _read_state(self.state_file)
        except StateError:
            return
        serial = current.serial if current else 0
        raise StateError(
            f"{self.state_file}: reads fine (serial {serial}); recover replaces a missing or "
            "damaged state only. To go back to the backup anyway, add --force"
        )

    # -- locking -----------------------------------------------------------------------

    def lock(self, operation: str) -> LockInfo:
        info = self._lock.acquire(operation)
        remove_stale_temps(self.path)  # left by killed runs: only now is nobody writing
        remove_stale_temps(self.snapshots)
        return info

    def unlock(self, lock_id: str) -> None:
        self._lock.release(lock_id)

    def force_unlock(self, lock_id: str, force: bool = False) -> None:
        self._lock.force_release(lock_id, force)

    def lock_info(self) -> LockInfo | None:
        return self._lock.info()


def _digests(state: State | None) -> frozenset[str]:
    return state.snapshot_digests() if state is not None else frozenset()


def _lost_message(state_file: Path, traces: tuple[str, ...]) -> str:
    has_backup = "state.json.backup" in traces
    how = (
        "To restore the state before the last write, run: segops state recover\n"
        if has_backup
        else "Restore the state folder from a copy if you have one.\n"
    )
    return (
        f"{state_file} is missing, but {state_file.parent} holds traces of an earlier state "
        f"({', '.join(traces[:8])}{', …' if len(traces) > 8 else ''}). segops will not start a "
        "new, empty state over them: every destination would be planned as new, and members "
        f"removed from the sources since would never be removed.\n{how}"
        "To start a new state anyway (the traces are moved to abandoned/), add "
        "--allow-new-state to `segops apply`."
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
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}. {RECOVER_HINT}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise StateError(f"{path}: not UTF-8 text: the file is damaged. {RECOVER_HINT}") from None
    except (ValueError, RecursionError) as exc:
        raise StateError(f"{path}: not valid JSON ({exc}). {RECOVER_HINT}") from None
    if not isinstance(data, dict):
        raise StateError(f"{path}: not a JSON object. {RECOVER_HINT}")
    return state_from_dict(data, str(path))
