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
  a live holder on this machine is only released with `force`;
- while a store holds the lock, a state.json that another run wrote since this store first
  read it is refused, never overwritten (a run that lost its lock cannot clobber a newer
  state); records are compare-and-swap too.

`StateBackend` is a whole store as the commands use it: state, lock, the `Records` that
apply and the platforms keep beside the state, and what `segops state migrate` needs.
The local store (local.py) and the S3 store (s3.py) implement it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from segops.state.model import DestinationState, LockInfo, State

__all__ = [
    "DestinationState",
    "LockInfo",
    "Locker",
    "Records",
    "State",
    "StateBackend",
    "StateReader",
    "StateStore",
]


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


class Records(Protocol):
    """Small records kept beside the state (journal, quota ledgers): bytes by name, with CAS."""

    def location(self, name: str) -> str:
        """Return where record `name` is kept, for messages."""
        ...

    def get(self, name: str) -> tuple[bytes, str] | None:
        """Return the record's bytes and its tag (version), or None when there is none."""
        ...

    def put(self, name: str, data: bytes, tag: str | None) -> str:
        """Replace the record if its tag is still `tag` (None: it must not exist); new tag.

        Raises:
            StateError: the record moved since it was read (another run wrote it).
        """
        ...


class StateBackend(StateStore, Locker, Protocol):
    @property
    def records(self) -> Records:
        """Return the records kept beside the state."""
        ...

    def describe(self) -> str:
        """Return where the state is kept, for people (a folder, an s3:// URL)."""
        ...

    def entries(self) -> list[str]:
        """Return every name the store holds (snapshots/..., journal.jsonl...), but the lock."""
        ...

    def export_to(self, name: str, dest: Path) -> None:
        """Copy entry `name` to the local file `dest`."""
        ...

    def import_from(self, name: str, source: Path) -> None:
        """Store the local file `source` as entry `name`."""
        ...

    def retire(self, record: bytes) -> None:
        """Mark the store as moved (moved.json): every later use fails, saying where to."""
        ...
