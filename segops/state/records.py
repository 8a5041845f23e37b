"""Records kept beside the state (the apply journal, quota ledgers): bytes by name, with CAS.

A record is read whole with a tag and written whole only if its tag has not moved since
(`put(name, data, tag)`; `tag=None` means "must not exist yet"), so a run that lost the
state lock can never overwrite what a newer run recorded. On S3 the tag is the object's
ETag and the check is the storage's own conditional write (segops.state.s3); here, in the
local folder, it is the sha256 of the file's bytes, checked under the state lock.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from segops._fs import PRIVATE_FILE, atomic_write, private_dir
from segops.errors import StateError
from segops.state.document import BACKUP, LOCK, MOVED, PENDING, STATE

# A record name: one plain file name (no folders); the store's own files are not records.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
RESERVED = frozenset({STATE, BACKUP, PENDING, LOCK, MOVED})


def check_name(name: str) -> str:
    """Return `name` if it can name a record; raise StateError otherwise."""
    if not _NAME.fullmatch(name) or name in RESERVED or name.endswith(".tmp"):
        raise StateError(f"{name[:80]!r} cannot name a state record")
    return name


def conflict(where: str) -> StateError:
    """Return the error of a compare-and-swap that lost: another run wrote `where` since."""
    return StateError(
        f"{where}: changed since this run read it: another segops run wrote it (was this run's "
        "state lock released with force-unlock?). Nothing was overwritten; run `segops plan` "
        "to see where things stand"
    )


def tag_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileRecords:
    """Records as private files in the state folder; implements the Records protocol."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def location(self, name: str) -> str:
        return str(self.folder / name)

    def get(self, name: str) -> tuple[bytes, str] | None:
        path = self.folder / check_name(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{path}: cannot read: {exc.strerror}") from None
        return data, tag_of(data)

    def put(self, name: str, data: bytes, tag: str | None) -> str:
        current = self.get(name)
        if (current[1] if current else None) != tag:
            raise conflict(self.location(name))
        private_dir(self.folder)
        atomic_write(self.folder / name, data, PRIVATE_FILE)
        return tag_of(data)
