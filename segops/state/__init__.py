"""State: what segops last applied, per destination; read by plan, written only by apply.

`StateReader` is all the planner gets; `StateStore` adds writing; `Locker` is the small
lock protocol held around apply. Every store passes the conformance suite in
tests/state/conformance.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from segops.state.model import DestinationState, LockInfo, State

__all__ = ["DestinationState", "LockInfo", "Locker", "State", "StateReader", "StateStore"]


class StateReader(Protocol):
    def read(self) -> State | None:
        """Return the current state, or None when nothing was ever applied."""
        ...

    def snapshot_path(self, sha256: str) -> Path:
        """Return a local path to the snapshot file with this digest."""
        ...


class StateStore(StateReader, Protocol):
    def write(self, state: State) -> State:
        """Persist `state` with the next serial, atomically, keeping a backup; return it."""
        ...

    def put_snapshot(self, path: Path, sha256: str) -> None:
        """Store a snapshot file under its digest (idempotent)."""
        ...


class Locker(Protocol):
    def lock(self, operation: str) -> LockInfo:
        """Take the lock or raise StateLockedError naming who holds it."""
        ...

    def unlock(self, lock_id: str) -> None:
        """Release the lock taken with `lock_id`; raise StateError if another holds it."""
        ...
