"""The local state lock: `lock.json` in the state folder, created with its content at once.

The lock is written to a private temporary file, fsynced, then hard-linked to its name:
`link` fails when the name exists, so taking the lock is atomic and a kill never leaves
an empty lock behind. A lock that cannot be read (damaged, or left by a segops before
this one) is named by the digest of its bytes, `unreadable-<12 hex>`, which
`segops force-unlock` accepts. A lock whose process still runs on this machine is only
released with `--force`: two applies at once would send every change twice.
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import json
import os
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

from segops._fs import PRIVATE_FILE, fsync_path, pid_alive, private_dir
from segops.errors import StateError, StateLockedError
from segops.state.model import LockInfo

UNREADABLE = "unreadable-"


class LockFile:
    """Take, inspect and release the lock file at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.held: str | None = None  # the id of the lock this object took, while held

    def acquire(self, operation: str) -> LockInfo:
        """Take the lock or raise StateLockedError naming who holds it."""
        private_dir(self.path.parent)
        info = new_lock(operation)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{info.id[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
        try:
            os.fchmod(fd, PRIVATE_FILE)
            os.write(fd, lock_bytes(info))
            os.fsync(fd)
            os.close(fd)
            _link(tmp, self.path)
        except FileExistsError:
            raise StateLockedError(self.locked_message()) from None
        finally:
            tmp.unlink(missing_ok=True)
        fsync_path(self.path.parent)
        self.held = info.id
        return info

    def release(self, lock_id: str) -> None:
        """Release the lock this process took with `lock_id`."""
        self._remove(lock_id)
        self.held = None

    def force_release(self, lock_id: str, force: bool = False) -> None:
        """Remove a lock another run left; refuse a live holder on this machine unless `force`."""
        check_not_alive(str(self.path), self._read(), force)
        self._remove(lock_id)

    def info(self) -> LockInfo | None:
        """Return who holds the lock, None when nobody does.

        Raises:
            StateError: the lock file cannot be read; the message says how to remove it.
        """
        held = self._read()
        if isinstance(held, str):
            raise StateError(
                f"{self.path}: the lock file cannot be read (a run killed while taking it, or "
                f"damage). If no segops run is going on, remove it with: segops force-unlock {held}"
            )
        return held

    def locked_message(self) -> str:
        """Return the message for a lock another run holds, with how to release it."""
        return locked_message(str(self.path), self._read())

    def _read(self) -> LockInfo | str | None:
        """Return the lock, its `unreadable-` name when it cannot be parsed, or None."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the lock: {exc.strerror}") from None
        return parse_lock(data)

    def _remove(self, lock_id: str) -> None:
        check_lock_id(str(self.path), self._read(), lock_id)
        self.path.unlink()
        fsync_path(self.path.parent)


def _link(tmp: Path, path: Path) -> None:
    """Give the written temporary file its final name; fail if that name exists."""
    try:
        os.link(tmp, path)  # atomic, and the lock is never seen empty
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # A file system without hard links: create exclusively and fill (a kill in between
        # leaves an unreadable lock, which force-unlock removes by its `unreadable-` name).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
        try:
            os.write(fd, tmp.read_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)


# -- shared by every store's lock ------------------------------------------------------------


def new_lock(operation: str) -> LockInfo:
    """Return a new lock of this process for `operation`."""
    return LockInfo(
        id=str(uuid.uuid4()),
        operation=operation,
        who=f"{_user()}@{socket.gethostname()}",
        pid=os.getpid(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def lock_bytes(info: LockInfo) -> bytes:
    return json.dumps(info.to_dict(), indent=2).encode()


def parse_lock(data: bytes) -> LockInfo | str:
    """Return the lock in `data`, or its `unreadable-<hex>` name when it cannot be parsed."""
    try:
        return LockInfo.from_dict(json.loads(data.decode("utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return UNREADABLE + hashlib.sha256(data).hexdigest()[:12]


def locked_message(where: str, held: LockInfo | str | None) -> str:
    """Return the message for a lock another run holds at `where`, with how to release it."""
    if held is None:
        return f"{where}: the state is locked"
    if isinstance(held, str):
        return (
            f"the state is locked, but {where} cannot be read (a run killed while taking "
            f"it, or damage).\nIf no segops run is going on, release it with: "
            f"segops force-unlock {held}"
        )
    gone = ""
    if held.who.endswith(f"@{socket.gethostname()}") and not pid_alive(held.pid):
        gone = f"  (process {held.pid} is no longer running on this machine: the lock is stale)\n"
    return (
        f"the state is locked by another segops run\n{gone}"
        f"  Lock ID:   {held.id}\n  Operation: {held.operation}\n  Who:       {held.who}\n"
        f"  PID:       {held.pid}\n  Created:   {held.created}\n"
        f"If that run is gone, release the lock with: segops force-unlock {held.id}"
    )


def check_not_alive(where: str, held: LockInfo | str | None, force: bool) -> None:
    """Refuse to release a lock whose process still runs on this machine, unless `force`."""
    if isinstance(held, LockInfo) and not force and _alive_here(held):
        raise StateError(
            f"{where}: lock {held.id} is held by process {held.pid} on this machine, "
            f"which is still running ({held.operation} since {held.created}): releasing it "
            "would let two runs send the same changes. Stop that process, or if you are sure "
            "it is not segops, run `segops force-unlock ID --force`"
        )


def check_lock_id(where: str, held: LockInfo | str | None, lock_id: str) -> None:
    """Refuse to remove a lock other than `lock_id` (or no lock at all)."""
    if held is None:
        raise StateError(f"{where}: no lock is held")
    current = held if isinstance(held, str) else held.id
    if current != lock_id:
        raise StateError(f"{where}: the lock is held with ID {current}, not {lock_id}")


def _alive_here(held: LockInfo) -> bool:
    return held.who.endswith(f"@{socket.gethostname()}") and pid_alive(held.pid)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
