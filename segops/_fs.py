"""File operations shared by every stage: durable writes, private files, regular files only.

Files that hold member identifiers or state are private: 0600 in 0700 folders, whatever
the umask, because the umask can only take permissions away.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def fsync_path(path: Path | str) -> None:
    """fsync a file or a folder by path (for a folder: make its entries durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, mode: int | None = None, *, sync_data: bool = True
) -> None:
    """Write `data` to `path` so readers see the old content or the new, never a mix.

    With `mode`, the file gets exactly that mode; without it, the mode the umask gives.
    `sync_data=False` is for a cache its reader checks (after a crash the file may be
    empty): the data is not fsynced, the folder still is.
    """
    with atomic_open(path, mode, sync_data=sync_data) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_open(
    path: Path, mode: int | None = PRIVATE_FILE, *, sync_data: bool = True
) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces `path` once the block ends without an exception.

    The temporary file sits next to `path` (so the rename is atomic) and is removed when
    the block fails; the data (unless `sync_data` is false) and the folder entry are
    fsynced before this returns.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    # Without a mode, the umask decides, as for a plain open().
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if sync_data:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) and make it a folder only its owner can enter."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def open_private(path: Path) -> IO[bytes]:
    """Create `path` for writing with mode 0600; refuse an existing file or a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, "wb")


def pid_alive(pid: int) -> bool:
    """Return whether a process with this id runs on this machine (it may be another's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP = re.compile(r"\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp")


def remove_stale_temps(folder: Path, of: str = "") -> None:
    """Delete temporary files that `atomic_open` left in `folder` when its process was killed.

    With `of`, only the temporary files of the file with that name.
    """
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        match = _TEMP.fullmatch(entry)
        if match is None or (of and match.group(1) != of):
            continue
        if not pid_alive(int(match.group(2))):
            with contextlib.suppress(OSError):
                os.unlink(folder / entry)


SCRATCH_PREFIX = "segops-"
_SCRATCH = re.compile(r"segops-(\d+)-[a-z0-9_]+")


def scratch_name(folder: Path) -> Path:
    """Return a path in `folder` for a new scratch folder of this process, not made yet.

    `segops-<pid>-<64 random bits>`: no other live process uses the prefix, and none of this
    process's folders holds the name when it is returned.
    """
    while True:
        path = folder / f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        if not os.path.lexists(path):
            return path


def remove_stale_scratch(folder: Path) -> None:
    """Delete the scratch folders (`segops-<pid>-*`) of this user's runs that were killed."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _SCRATCH.fullmatch(entry.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry.path)  # removes links inside, never follows them


class NotRegularFileError(OSError):
    """A path names a directory, a named pipe, a socket or a device instead of a file."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def blake3_hex(handle: IO[bytes], threads: bool = False) -> str:
    """Return the BLAKE3 digest (hex) of what is left to read from `handle`.

    read() into one buffer, no mmap: a file truncated meanwhile would kill the process.
    `threads`: hash each 4 MiB read on every core (a foreground check, nothing beside it);
    by default one core, for a digest that runs beside the member engine.
    """
    import blake3  # a compiled module; most commands never hash a file

    digest = blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)
    buffer = bytearray(_HASH_CHUNK)
    view = memoryview(buffer)
    while size := handle.readinto(buffer):  # type: ignore[attr-defined]
        digest.update(view[:size])
    return str(digest.hexdigest())


_HASH_CHUNK = 4 << 20


def check_regular(path: Path | str) -> None:
    """Raise NotRegularFileError unless `path` is a regular file (symlinks are followed).

    Raises:
        OSError: the path cannot be looked at (missing, no permission).
    """
    _check_mode(path, os.stat(path).st_mode)


def open_regular(path: Path | str) -> io.BufferedReader:
    """Open a regular file for reading; never block on a named pipe or a device.

    The path is checked before it is opened and the open file again (the path may have been
    replaced in between); O_NONBLOCK keeps a pipe from blocking the open itself.
    """
    check_regular(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check_mode(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_mode(path: Path | str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise NotRegularFileError(path, kind)
