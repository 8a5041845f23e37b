"""State: what segops last applied, per destination; read by plan, written only by apply.

`StateReader` is all the planner gets; `StateStore` adds writing; `Locker` is the small
lock protocol held around apply. Every store passes the conformance suite in
tests/state/conformance.py, which holds the guarantees below:

- a read checks state.json's digests, and a snapshot's bytes against its digest;
- a store never starts afresh while traces of an earlier state remain (LostStateError);
  only `abandon` (`--allow-new-state`) sets them aside, and `recover` goes back to the backup;
- a first apply is recorded by `begin` before anything is sent, so a killed first apply
  resumes with its lineage instead of looking like a lost state;
- a lock is created whole; an unreadable one is named `unreadable-<hex>` for force-unlock;
  a live holder on this machine is only released with `force`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from segops.state.model import DestinationState, LockInfo, State

__all__ = ["DestinationState", "LockInfo", "Locker", "State", "StateReader", "StateStore"]


class StateReader(Protocol):
    def read(self) -> State | None:
        """Return the current state, or None when nothing was ever applied.

        A first apply that began and wrote nothing yet reads as an empty state of its
        lineage with serial 0.

        Raises:
            LostStateError: the state is gone but traces of it remain.
            StateError: the state cannot be read or fails its digests.
        """
        ...

    def snapshot_path(self, sha256: str) -> Path:
        """Return a local path to the snapshot file with this digest, its bytes checked."""
        ...


class StateStore(StateReader, Protocol):
    def write(self, state: State) -> State:
        """Persist `state` with the next serial, atomically, keeping a backup; return it."""
        ...

    def put_snapshot(self, path: Path, sha256: str) -> None:
        """Store a snapshot file under its digest (idempotent; its digest is checked)."""
        ...

    def begin(self, state: State) -> State:
        """Record that the first apply of `state.lineage` starts; return the empty state."""
        ...

    def abandon(self, state: State) -> State:
        """Set the traces of a lost state aside (kept, not deleted) and begin `state`."""
        ...

    def recover(self, force: bool = False) -> State:
        """Make the backup the current state (a sound current one only with `force`)."""
        ...


class Locker(Protocol):
    def lock(self, operation: str) -> LockInfo:
        """Take the lock or raise StateLockedError naming who holds it."""
        ...

    def unlock(self, lock_id: str) -> None:
        """Release the lock taken with `lock_id`; raise StateError if another holds it."""
        ...

    def force_unlock(self, lock_id: str, force: bool = False) -> None:
        """Remove a lock another run left; refuse a live holder on this machine unless `force`."""
        ...
