"""The local state store: `.segops/` in the workspace.

Layout::

    .segops/state.json           current state (format_version, lineage, serial, destinations)
    .segops/state.json.backup    the state.json it replaced, kept on every write
    .segops/snapshots/<sha256>.parquet   applied members, one file per digest
    .segops/new-state.json       the lineage of a first apply that has not written state yet
    .segops/lock.json            present while a process holds the lock (lockfile.py)
    .segops/abandoned/<time>/    traces of a lost state, set aside by --allow-new-state
    .segops/journal.jsonl, moengage-ledger-*.json   records of apply and the platforms
    .segops/moved.json           written by `segops state migrate`: the state lives elsewhere

Files are 0600 in 0700 folders. Writes go to a temporary file in the same folder, are
fsynced, then renamed over the old file, so a reader sees the old state or the new one.
state.json's digests are checked on every read (segops.state.model), and a snapshot's
bytes against its digest before it is used. state.json is never started afresh while
anything else is in the folder: that is a lost state, refused with how to recover it.
While a store holds the lock, state.json changing under it (another run force-unlocked
and wrote) is refused on its next read or write, never overwritten.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from segops._fs import (
    PRIVATE_FILE,
    atomic_open,
    atomic_write,
    fsync_path,
    private_dir,
    remove_stale_temps,
)
from segops.errors import LostStateError, StateError
from segops.state.document import (
    BACKUP,
    LOCK,
    MOVED,
    PENDING,
    STATE,
    check_lineage,
    damaged_check,
    digests,
    lost_message,
    moved_message,
    parse_pending,
    parse_state,
    pending_bytes,
    state_text,
)
from segops.state.lockfile import LockFile
from segops.state.model import RECOVER_HINT, LockInfo, State
from segops.state.records import FileRecords, conflict
from segops.state.snapshots import SnapshotFiles

# Folder entries that are not traces of an earlier state.
_NOT_TRACES = frozenset({"abandoned", "tmp"})
# Records of the platforms' own quotas: still true after a state is lost, so they stay.
_KEPT_ON_ABANDON = re.compile(r".*-ledger-.*\.json")


class LocalStateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_file = path / STATE
        self.backup_file = path / BACKUP
        self.pending_file = path / PENDING
        self.snapshots = path / "snapshots"
        self.lock_file = path / LOCK
        self.records = FileRecords(path)
        self._lock = LockFile(self.lock_file)
        self._files = SnapshotFiles(self.snapshots)
        self._cached: tuple[tuple[int, int, int], State | None] | None = None
        # While this store holds the lock: the state.json it first read (its stat; None when
        # absent). Another version appearing means another run wrote it: refused, never
        # overwritten (the local twin of S3's If-Match).
        self._pinned: tuple[tuple[int, int, int] | None] | None = None

    def describe(self) -> str:
        """Return where this store keeps the state, for people."""
        return str(self.path)

    # -- reading ---------------------------------------------------------------------

    def read(self) -> State | None:
        """Return the state on disk; parsed once per version of the file (by its stat).

        Raises:
            LostStateError: state.json is missing but the folder holds traces of a state.
            StateError: state.json cannot be read, or fails its digests.
        """
        self._check_moved()
        try:
            info = self.state_file.stat()
        except FileNotFoundError:
            self._check_pinned(None)
            return self._without_state()
        except OSError as exc:
            raise StateError(f"{self.state_file}: cannot read: {exc.strerror}") from None
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        self._check_pinned(key)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, _read_state(self.state_file))
        return self._cached[1]

    def _check_pinned(self, key: tuple[int, int, int] | None) -> None:
        if self._lock.held is None:
            return
        if self._pinned is None:
            self._pinned = (key,)
        elif self._pinned != (key,):
            raise conflict(str(self.state_file))

    def _repin(self) -> None:
        if self._lock.held is not None:
            info = self.state_file.stat()
            self._pinned = ((info.st_mtime_ns, info.st_size, info.st_ino),)

    def _check_moved(self) -> None:
        try:
            raw = (self.path / MOVED).read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"{self.path / MOVED}: cannot read: {exc.strerror}") from None
        raise StateError(moved_message(str(self.path / MOVED), raw))

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
            raise LostStateError(lost_message(str(self.state_file), str(self.path), traces))
        return None

    def _pending(self) -> State | None:
        try:
            raw = self.pending_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.pending_file}: cannot read: {exc.strerror}") from None
        return parse_pending(raw, str(self.pending_file))

    # -- writing ---------------------------------------------------------------------

    def begin(self, state: State) -> State:
        """Record that a first apply of `state.lineage` starts; return it as the state."""
        # Not read(): after `abandon`, the quota ledgers kept would read as a lost state.
        self._check_moved()
        if self.state_file.exists() or self.pending_file.exists():
            raise StateError(f"{self.state_file}: a state exists already; nothing to begin")
        private_dir(self.path)
        atomic_write(self.pending_file, pending_bytes(state), PRIVATE_FILE)
        return replace(state, serial=0, destinations=(), resources=())

    def write(self, state: State) -> State:
        current = self.read()
        check_lineage(current, state, str(self.state_file))
        new = replace(state, serial=(current.serial if current else 0) + 1)
        private_dir(self.path)
        if self.state_file.exists():
            atomic_write(self.backup_file, self.state_file.read_bytes(), PRIVATE_FILE)
        atomic_write(self.state_file, state_text(new).encode(), PRIVATE_FILE)
        self._repin()
        self.pending_file.unlink(missing_ok=True)
        # The backup now holds `current`: keep what either refers to.
        self._files.collect(new.snapshot_digests() | digests(current))
        return new

    def put_snapshot(self, path: Path, sha256: str) -> None:
        self._files.put(path, sha256)

    def abandon(self, state: State) -> State:
        """Set the traces of a lost state aside in abandoned/<time>/ and begin `state`."""
        self._check_moved()
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
        self._check_moved()
        if not self.backup_file.is_file():
            raise StateError(f"{self.backup_file}: there is no backup to recover from")
        backup = _read_state(self.backup_file)
        assert backup is not None
        for entry in backup.destinations:
            self.snapshot_path(entry.snapshot.sha256)
        if self.state_file.exists():
            if not force:
                damaged_check(self.state_file.read_bytes(), str(self.state_file))
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            os.replace(self.state_file, self.path / f"state.json.damaged-{stamp}")
        recovered = replace(backup, serial=backup.serial + 2)
        atomic_write(self.state_file, state_text(recovered).encode(), PRIVATE_FILE)
        self._repin()
        self.pending_file.unlink(missing_ok=True)
        self._cached = None
        return recovered

    # -- locking -----------------------------------------------------------------------

    def lock(self, operation: str) -> LockInfo:
        info = self._lock.acquire(operation)
        self._pinned = None
        remove_stale_temps(self.path)  # left by killed runs: only now is nobody writing
        remove_stale_temps(self.snapshots)
        return info

    def unlock(self, lock_id: str) -> None:
        self._lock.release(lock_id)
        self._pinned = None

    def force_unlock(self, lock_id: str, force: bool = False) -> None:
        self._lock.force_release(lock_id, force)

    def lock_info(self) -> LockInfo | None:
        return self._lock.info()

    # -- moving the state to another store (segops state migrate) -------------------------

    def entries(self) -> list[str]:
        """Return the name of every file the store holds, but the lock and temporary files."""
        if not self.path.is_dir():
            return []
        found = (p.relative_to(self.path).as_posix() for p in self.path.rglob("*"))
        return sorted(
            n
            for n in found
            if (self.path / n).is_file() and n != LOCK and not n.rsplit("/", 1)[-1].endswith(".tmp")
        )

    def export_to(self, name: str, dest: Path) -> None:
        """Copy the file `name` of the store to `dest`."""
        with (self.path / _relative(name)).open("rb") as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)

    def import_from(self, name: str, source: Path) -> None:
        """Store the file `source` as `name` (a private file, written atomically)."""
        target = self.path / _relative(name)
        private_dir(target.parent)
        with source.open("rb") as src, atomic_open(target) as out:
            shutil.copyfileobj(src, out, 1 << 20)

    def retire(self, record: bytes) -> None:
        """Write moved.json: from now on the store refuses to be used, saying where it went."""
        atomic_write(self.path / MOVED, record, PRIVATE_FILE)


def _relative(name: str) -> str:
    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise StateError(f"{name[:80]!r} cannot name a file of the state folder")
    return name


def _read_state(path: Path) -> State | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}. {RECOVER_HINT}") from None
    return parse_state(raw, str(path))
