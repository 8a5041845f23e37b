"""Snapshot files of the local store: content-addressed, private, checked before use.

A snapshot is what segops applied to one destination; state.json names it by the sha256 of
its bytes. Before a snapshot is used its bytes are hashed and compared with that name, so a
damaged file, or another valid Parquet file put in its place, is refused instead of silently
diffed against. State entries are bound to their snapshot by their own digests
(segops.state.model), so an entry cannot point at another destination's file unnoticed.

When segops stores a snapshot it also writes the BLAKE3 digest of the same bytes beside it
(`<sha256>.blake3`), and checks the file by that digest: 0.05 s for the 330 MB snapshot of
10 million hashes on two cores, where sha256 takes 0.22 s (a plan of 10 million members
takes 3 s). BLAKE3 is a 256-bit cryptographic hash like sha256, so a file that matches it
has the bytes that were stored under the sha256 name. A missing, damaged or different
digest file is no reason to refuse: the check falls back to sha256 (snapshots stored by
earlier versions have none until a command that stores snapshots writes one).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Collection
from pathlib import Path

from segops._fs import PRIVATE_FILE, atomic_write, blake3_hex, open_private, private_dir
from segops.errors import StateError

SNAPSHOT_NAME = re.compile(r"([0-9a-f]{64})\.parquet")
_STORED_FILE = re.compile(r"([0-9a-f]{64})\.(parquet|blake3)")
_CHUNK = 1 << 20
SNAPSHOT_HINT = (
    "The snapshot records what segops applied to a destination. Restore the state folder "
    "from a copy, or go back to the state before the last write with `segops state recover "
    "--force` (if the backup's snapshots are intact)."
)


class SnapshotFiles:
    """The folder of snapshot files, named `<sha256>.parquet`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._verified: dict[str, tuple[int, int, int]] = {}  # digest -> (inode, size, mtime)
        self._unrecorded: dict[str, str] = {}  # sha256 -> BLAKE3 of a file checked by sha256

    def verified(self, sha256: str) -> Path:
        """Return the path of snapshot `sha256` after checking its bytes match the digest."""
        path = self._path(sha256)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise StateError(
                f"{path}: the snapshot named in state.json is missing. {SNAPSHOT_HINT}"
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path}: the snapshot is not a regular file. {SNAPSHOT_HINT}")
        key = (info.st_ino, info.st_size, info.st_mtime_ns)
        if self._verified.get(sha256) != key:
            self._check(path, sha256)
            self._verified[sha256] = key
        return path

    def _check(self, path: Path, sha256: str) -> None:
        """Raise StateError unless the bytes at `path` are snapshot `sha256`.

        By the BLAKE3 digest file when it matches; else by sha256, keeping the BLAKE3 digest
        computed in the same pass for `put` to record (a command that only reads the state
        writes nothing).
        """
        recorded = self._recorded_blake3(sha256)
        try:
            with path.open("rb") as handle:
                if recorded is not None and blake3_hex(handle, threads=True) == recorded:
                    return
                handle.seek(0)
                digests = _Digests()
                while chunk := handle.read(_CHUNK):
                    digests.update(chunk)
        except OSError as exc:
            raise StateError(f"{path}: cannot read the snapshot: {exc.strerror}") from None
        if digests.sha256.hexdigest() != sha256:
            raise StateError(
                f"{path}: the snapshot's bytes do not match its digest (damaged or "
                f"replaced). {SNAPSHOT_HINT}"
            )
        self._unrecorded[sha256] = str(digests.blake3.hexdigest())

    def _recorded_blake3(self, sha256: str) -> str | None:
        try:
            text = (self.folder / f"{sha256}.blake3").read_text("ascii")
        except (OSError, UnicodeDecodeError):
            return None
        return text if re.fullmatch("[0-9a-f]{64}", text) else None

    def _record_blake3(self, sha256: str, digest: str) -> None:
        # A cache `_check` verifies: left empty or torn by a crash, the check falls back
        # to sha256. Its data is not fsynced (a thousand small applies: 1,000 fsyncs); the
        # folder is, which also makes the snapshot's own rename durable.
        atomic_write(
            self.folder / f"{sha256}.blake3", digest.encode(), PRIVATE_FILE, sync_data=False
        )

    def put(self, source: Path, sha256: str) -> None:
        """Store `source` as snapshot `sha256` (idempotent; a damaged copy is replaced)."""
        private_dir(self.folder)
        final = self._path(sha256)
        try:
            self.verified(sha256)
        except StateError:
            pass
        else:
            if sha256 in self._unrecorded:  # stored by an earlier version, or its digest lost
                self._record_blake3(sha256, self._unrecorded.pop(sha256))
            return
        tmp = self.folder / f".{sha256}.parquet.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        digests = _Digests()
        try:
            with source.open("rb") as src, open_private(tmp) as dst:
                while chunk := src.read(_CHUNK):
                    digests.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if digests.sha256.hexdigest() != sha256:
                raise StateError(f"{source}: does not match the digest it is stored under")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self._record_blake3(sha256, str(digests.blake3.hexdigest()))  # fsyncs the folder

    def collect(self, keep: Collection[str]) -> None:
        """Delete the snapshot files (and their BLAKE3 digests) whose digest is not in `keep`."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return
        for name in names:
            match = _STORED_FILE.fullmatch(name)
            if match and match.group(1) not in keep:
                (self.folder / name).unlink(missing_ok=True)

    def _path(self, sha256: str) -> Path:
        if not SNAPSHOT_NAME.fullmatch(f"{sha256}.parquet"):
            raise StateError(f"snapshot digest {sha256[:80]!r} is not 64 lowercase hex")
        return self.folder / f"{sha256}.parquet"


class _Digests:
    """The sha256 and the BLAKE3 digest of the same bytes, in one pass."""

    def __init__(self) -> None:
        import blake3

        self.sha256 = hashlib.sha256()
        self.blake3 = blake3.blake3()

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.blake3.update(chunk)
