"""File operations shared by every stage: durable writes, and reading only regular files."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path


def fsync_path(path: Path | str) -> None:
    """fsync a file or a folder by path (for a folder: make its entries durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old content or the new, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


class NotRegularFileError(OSError):
    """A path names a directory, a named pipe, a socket or a device instead of a file."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


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
