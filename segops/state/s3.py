"""The S3 state store: the local layout under `s3://bucket/prefix/`, kept with conditional writes.

Layout (names as in the local store)::

    state.json, state.json.backup, new-state.json     the state, its backup, a first apply
    snapshots/<sha256>.parquet                        applied members, named by their digest
    lock.json                                         the lock (segops.state.s3lock)
    journal.jsonl, moengage-ledger-<connection>.json  records of apply and the platforms
    abandoned/<time>/..., state.json.damaged-<time>   set aside by --allow-new-state, recover
    moved.json                                        written by `segops state migrate`
    work/<command>/...                                the Spark engine's scratch objects

Every write of state.json is a compare-and-swap: `If-Match` on the ETag of the version
this store read (`If-None-Match: *` when there was none), and so is the backup's. While
the store holds the lock, the version it first read is pinned: a state.json written by
anyone else since (a run that force-unlocked this one) is refused on the next read or
write, so a run that lost its lock never overwrites a newer state. Snapshots are checked
against their digest as they are downloaded into the command's scratch folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from segops._fs import private_dir
from segops.errors import LostStateError, StateError
from segops.model import SharedFolder, SourceConnection, SourceConnectionKind
from segops.state.document import (
    BACKUP,
    LOCK,
    MOVED,
    PENDING,
    SNAPSHOTS,
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
from segops.state.model import LockInfo, State
from segops.state.records import conflict
from segops.state.s3io import ANY, Conflict, S3Location, S3Objects
from segops.state.s3lock import S3Lock, S3Records
from segops.state.snapshots import SNAPSHOT_HINT, SNAPSHOT_NAME

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# the Spark engine's scratch objects of a command under way (segops.model.SharedFolder)
WORK = "work"
_NOT_TRACES = frozenset({"abandoned", PENDING, WORK})
_KEPT_ON_ABANDON = re.compile(r".*-ledger-.*\.json")


class S3StateStore:
    """The state under an S3 prefix; implements segops.state.StateBackend."""

    def __init__(self, location: S3Location, work: Path, client: S3Client | None = None) -> None:
        self.location = location
        self._objects = S3Objects(location, client)
        self._lock = S3Lock(self._objects)
        self.records = S3Records(self._objects)
        self._work = work / "state-snapshots"  # verified downloads, for the engine
        self._etags: dict[str, str | None] = {}  # last version seen by name (None: absent)
        self._seen: tuple[bytes, State] | None = None  # state.json at _etags[STATE]
        self._current: State | None = None  # what the next write follows
        self._known = False  # whether _current was read
        self._pinned: tuple[str | None] | None = None  # see the module docstring
        self._verified: dict[str, Path] = {}
        self._snapshot_etags: dict[str, str | None] = {}  # of the verified snapshots' objects
        self._moved_checked = False

    def describe(self) -> str:
        """Return where this store keeps the state, for people."""
        return self.location.url().rstrip("/")

    def _url(self, name: str) -> str:
        return self.location.url(name)

    # -- reading ---------------------------------------------------------------------

    def read(self) -> State | None:
        """Return the state on S3 (downloaded again only when its ETag changed)."""
        self._check_moved()
        cached = self._etags.get(STATE) if self._seen is not None else None
        got = self._objects.get(STATE, cached)
        etag = cached if got is False else (got[1] if isinstance(got, tuple) else None)
        self._check_pinned(etag)
        if isinstance(got, tuple):
            self._seen = None  # until the new version parses
            parsed = parse_state(got[0], self._url(STATE))
            self._seen = (got[0], parsed)
        self._etags[STATE] = etag
        if etag is None:
            self._seen = None
            self._current = self._without_state()
        else:
            assert self._seen is not None
            self._current = self._seen[1]
        self._known = True
        return self._current

    def snapshot_path(self, sha256: str) -> Path:
        """Return a local copy of snapshot `sha256`, its bytes checked as it was downloaded."""
        name = _snapshot_name(sha256)
        if sha256 in self._verified:
            return self._verified[sha256]
        folder = private_dir(self._work)
        tmp, final = folder / f".{sha256}.{os.getpid()}.tmp", folder / f"{sha256}.parquet"
        try:
            got = self._objects.download(name, tmp)
            if got is None:
                raise StateError(
                    f"{self._url(name)}: the snapshot named in state.json is missing. "
                    f"{SNAPSHOT_HINT}"
                )
            digest, self._snapshot_etags[sha256] = got
            if digest != sha256:
                raise StateError(
                    f"{self._url(name)}: the snapshot's bytes do not match its digest (damaged "
                    f"or replaced). {SNAPSHOT_HINT}"
                )
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self._verified[sha256] = final
        return final

    def shared_folder(self) -> SharedFolder:
        """Return the state's prefix as the Spark engine's folder on S3 (segops.model)."""
        location = self.location
        connection = SourceConnection(
            "state", SourceConnectionKind.S3, location.region, location.endpoint_url
        )
        return SharedFolder(self._url(WORK), connection, self._snapshot_object)

    def _snapshot_object(self, path: Path) -> str | None:
        """Return the URL of the snapshot object whose verified copy is `path`, when the
        object is still the version this command downloaded or wrote (its etag); else None."""
        for sha256, verified in self._verified.items():
            if verified == path:
                name = _snapshot_name(sha256)
                etag = self._snapshot_etags.get(sha256)
                if etag is not None and self._objects.head(name) == etag:
                    return self._url(name)
        return None

    def traces(self) -> tuple[str, ...]:
        """Return the top-level names under the prefix that show an earlier state existed."""
        ignored = set(_NOT_TRACES) | ({LOCK} if self._lock.held else set())
        tops = {name.split("/", 1)[0] for name in self._objects.names()}
        return tuple(sorted(tops - ignored))

    def _without_state(self) -> State | None:
        got = self._objects.get(PENDING)
        if isinstance(got, tuple):
            self._etags[PENDING] = got[1]
            return parse_pending(got[0], self._url(PENDING))
        self._etags[PENDING] = None
        traces = self.traces()
        if traces == (LOCK,):
            raise LostStateError(
                f"{self._url(STATE)} is missing and {self.describe()} holds only a lock: "
                f"{self._lock.locked_message()}"
            )
        if traces:
            raise LostStateError(lost_message(self._url(STATE), self.describe(), traces))
        return None

    def _check_moved(self) -> None:
        if self._moved_checked:  # migrate needs the lock: no run moves it under a command
            return
        got = self._objects.get(MOVED)
        if isinstance(got, tuple):
            raise StateError(moved_message(self._url(MOVED), got[0]))
        self._moved_checked = True

    def _check_pinned(self, etag: str | None) -> None:
        if self._lock.held is None:
            return
        if self._pinned is None:
            self._pinned = (etag,)
            self._etags[BACKUP] = self._objects.head(BACKUP)  # the backup's version, now
        elif self._pinned != (etag,):
            raise conflict(self._url(STATE))

    # -- writing ---------------------------------------------------------------------

    def begin(self, state: State) -> State:
        """Record that a first apply of `state.lineage` starts; return it as the state."""
        # Not read(): after `abandon`, the quota ledgers kept would read as a lost state.
        self._check_moved()
        if self._objects.head(STATE) is not None or self._objects.head(PENDING) is not None:
            raise StateError(f"{self._url(STATE)}: a state exists already; nothing to begin")
        self._put(PENDING, pending_bytes(state), None)
        self._current = replace(state, serial=0, destinations=(), resources=())
        self._known = True
        return self._current

    def write(self, state: State) -> State:
        if not self._known:
            self.read()
        current = self._current
        check_lineage(current, state, self._url(STATE))
        new = replace(state, serial=(current.serial if current else 0) + 1)
        if self._seen is not None:
            if BACKUP not in self._etags:
                self._etags[BACKUP] = self._objects.head(BACKUP)
            self._put(BACKUP, self._seen[0], self._etags[BACKUP])
        self._put_state(new)
        # The backup now holds `current`: keep what either refers to.
        self._collect(new.snapshot_digests() | digests(current))
        return new

    def put_snapshot(self, path: Path, sha256: str) -> None:
        name = _snapshot_name(sha256)
        with path.open("rb") as handle:
            if hashlib.file_digest(handle, "sha256").hexdigest() != sha256:
                raise StateError(f"{path}: does not match the digest it is stored under")
        self._objects.upload(name, path)
        # the version just written, unless someone wrote the same name since (then its bytes
        # are not vouched for: executors read this command's own copy instead)
        self._snapshot_etags[sha256] = self._objects.head(name)
        final = private_dir(self._work) / f"{sha256}.parquet"
        if not final.exists():  # this command may read it again: keep the checked copy
            try:
                os.link(path, final)
            except OSError:
                shutil.copyfile(path, final)
        self._verified[sha256] = final

    def abandon(self, state: State) -> State:
        """Set the traces of a lost state aside under abandoned/<time>/ and begin `state`."""
        self._check_moved()
        if self._objects.head(STATE) is not None:
            raise StateError(f"{self._url(STATE)}: the state exists; there is nothing to abandon")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = f"abandoned/{stamp}-{os.getpid()}"
        traces = set(self.traces()) - {LOCK}
        for name in self._objects.names():
            top = name.split("/", 1)[0]
            if top in traces and not _KEPT_ON_ABANDON.fullmatch(top):
                self._objects.copy(name, f"{aside}/{name}")
                self._objects.delete(name)
        return self.begin(state)

    def recover(self, force: bool = False) -> State:
        """Make state.json.backup the current state; keep a damaged state.json beside it."""
        self._check_moved()
        got = self._objects.get(BACKUP)
        if not isinstance(got, tuple):
            raise StateError(f"{self._url(BACKUP)}: there is no backup to recover from")
        backup = parse_state(got[0], self._url(BACKUP))
        for entry in backup.destinations:
            self.snapshot_path(entry.snapshot.sha256)
        current = self._objects.get(STATE)
        self._etags[STATE] = None
        if isinstance(current, tuple):
            if not force:
                damaged_check(current[0], self._url(STATE))
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            self._objects.put(f"state.json.damaged-{stamp}", current[0], ANY)
            self._etags[STATE] = current[1]
        recovered = replace(backup, serial=backup.serial + 2)
        self._put_state(recovered)
        return recovered

    def _put_state(self, state: State) -> None:
        text = state_text(state).encode()
        etag = self._put(STATE, text, self._etags.get(STATE))
        self._seen, self._current, self._known = (text, state), state, True
        if self._lock.held is not None:
            self._pinned = (etag,)
        if self._etags.get(PENDING, ANY) is not None:  # unknown, or there: a first apply is over
            self._objects.delete(PENDING)
            self._etags[PENDING] = None

    def _put(self, name: str, data: bytes, match: str | None) -> str:
        try:
            etag = self._objects.put(name, data, match)
        except Conflict:
            raise conflict(self._url(name)) from None
        self._etags[name] = etag
        return etag

    def _collect(self, keep: frozenset[str]) -> None:
        """Delete the snapshots whose digest is not in `keep`."""
        for name in self._objects.names(f"{SNAPSHOTS}/"):
            match = SNAPSHOT_NAME.fullmatch(name.removeprefix(f"{SNAPSHOTS}/"))
            if match and match.group(1) not in keep:
                self._objects.delete(name)
                gone = self._verified.pop(match.group(1), None)
                if gone is not None:
                    gone.unlink(missing_ok=True)

    # -- locking -----------------------------------------------------------------------

    def lock(self, operation: str) -> LockInfo:
        info = self._lock.acquire(operation)
        self._pinned = None
        self._etags.pop(BACKUP, None)
        return info

    def unlock(self, lock_id: str) -> None:
        self._lock.release(lock_id)
        self._pinned = None

    def force_unlock(self, lock_id: str, force: bool = False) -> None:
        self._lock.force_release(lock_id, force)

    # -- moving the state to another store (segops state migrate) -------------------------

    def entries(self) -> list[str]:
        """Return the name of every object under the prefix but the lock and scratch objects."""
        return [n for n in self._objects.names() if n != LOCK and n.split("/")[0] != WORK]

    def export_to(self, name: str, dest: Path) -> None:
        if self._objects.download(name, dest) is None:
            raise StateError(f"{self._url(name)}: disappeared while being copied")

    def import_from(self, name: str, source: Path) -> None:
        self._objects.upload(name, source)

    def retire(self, record: bytes) -> None:
        """Write moved.json: from now on the store refuses to be used, saying where it went."""
        self._objects.put(MOVED, record, ANY)


def _snapshot_name(sha256: str) -> str:
    if not SNAPSHOT_NAME.fullmatch(f"{sha256}.parquet"):
        raise StateError(f"snapshot digest {sha256[:80]!r} is not 64 lowercase hex")
    return f"{SNAPSHOTS}/{sha256}.parquet"
