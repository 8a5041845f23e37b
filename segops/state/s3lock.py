"""The S3 state lock and records: objects written with the storage's conditional writes.

The lock is `lock.json`, created with `If-None-Match: *`: S3 lets exactly one of two
runs create it, whole, with its id, operation, who, pid and created time. It is removed
with `If-Match` on the ETag that was read, so `force-unlock ID` removes exactly the lock
it named and never one a newer run took since. Records (journal, quota ledgers) are
rewritten whole with `If-Match` on the ETag read (or `If-None-Match: *` for a new one).
"""

from __future__ import annotations

from segops.errors import StateError, StateLockedError
from segops.state.document import LOCK
from segops.state.lockfile import (
    check_lock_id,
    check_not_alive,
    lock_bytes,
    locked_message,
    new_lock,
    parse_lock,
)
from segops.state.model import LockInfo
from segops.state.records import check_name, conflict
from segops.state.s3io import Conflict, S3Objects

_TRIES = 3  # a lock released between our failed create and our read: look again


class S3Lock:
    """Take, inspect and release `lock.json` under the state's prefix."""

    def __init__(self, objects: S3Objects) -> None:
        self._objects = objects
        self.where = objects.location.url(LOCK)
        self.held: str | None = None  # the id of the lock this object took, while held

    def acquire(self, operation: str) -> LockInfo:
        """Take the lock or raise StateLockedError naming who holds it."""
        info = new_lock(operation)
        for _ in range(_TRIES):
            try:
                self._objects.put(LOCK, lock_bytes(info), None)
            except Conflict:
                held = self._read()
                if held is None:
                    continue
                raise StateLockedError(locked_message(self.where, held[0])) from None
            self.held = info.id
            return info
        raise StateLockedError(locked_message(self.where, None))

    def release(self, lock_id: str) -> None:
        """Release the lock this process took with `lock_id`."""
        self._remove(lock_id)
        self.held = None

    def force_release(self, lock_id: str, force: bool = False) -> None:
        """Remove a lock another run left; refuse a live holder on this machine unless `force`."""
        held = self._read()
        check_not_alive(self.where, held[0] if held else None, force)
        self._remove(lock_id, held)

    def locked_message(self) -> str:
        held = self._read()
        return locked_message(self.where, held[0] if held else None)

    def _read(self) -> tuple[LockInfo | str, str] | None:
        got = self._objects.get(LOCK)
        if not isinstance(got, tuple):
            return None
        return parse_lock(got[0]), got[1]

    def _remove(self, lock_id: str, held: tuple[LockInfo | str, str] | None = None) -> None:
        """Delete the lock if it is `lock_id`, conditional on the version read (`held`)."""
        held = held or self._read()
        check_lock_id(self.where, held[0] if held else None, lock_id)
        assert held is not None
        try:
            self._objects.delete(LOCK, held[1])
        except Conflict:
            raise StateError(
                f"{self.where}: the lock changed while it was being released (another run "
                "took it): nothing was removed"
            ) from None


class S3Records:
    """Records as objects under the state's prefix; implements the Records protocol."""

    def __init__(self, objects: S3Objects) -> None:
        self._objects = objects

    def location(self, name: str) -> str:
        return self._objects.location.url(name)

    def get(self, name: str) -> tuple[bytes, str] | None:
        got = self._objects.get(check_name(name))
        return got if isinstance(got, tuple) else None

    def put(self, name: str, data: bytes, tag: str | None) -> str:
        try:
            return self._objects.put(check_name(name), data, tag)
        except Conflict:
            raise conflict(self.location(name)) from None
