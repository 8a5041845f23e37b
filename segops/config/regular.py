"""Open workspace files only when they are regular files.

Opening a named pipe for reading blocks until a writer comes, and a device can be read
forever: segops opens without blocking, looks at what it opened, and refuses anything that
is not a regular file before reading a byte.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class UnreadableFile(Exception):
    """A file segops will not read; the message says why, without the path."""


def read_regular(path: Path, limit: int) -> bytes:
    """Return at most `limit` bytes from the start of the regular file `path`.

    Raises:
        UnreadableFile: `path` is missing, unreadable or not a regular file.
    """
    with os.fdopen(_open_regular(path), "rb") as handle:
        return handle.read(limit)


def check_regular(path: Path) -> None:
    """Check that `path` is a regular file segops can open.

    Raises:
        UnreadableFile: `path` is missing, unreadable or not a regular file.
    """
    os.close(_open_regular(path))


def _open_regular(path: Path) -> int:
    try:
        _check_mode(os.stat(path).st_mode)  # a socket cannot even be opened: say what it is
        fd = os.open(path, _FLAGS)
    except OSError as error:
        raise UnreadableFile(f"cannot read: {error.strerror}") from None
    try:
        _check_mode(os.fstat(fd).st_mode)  # what was opened, should the path have changed
    except UnreadableFile:
        os.close(fd)
        raise
    return fd  # O_NONBLOCK changes nothing for a regular file's reads


def _check_mode(mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise UnreadableFile(f"is {_kind(mode)}, not a regular file: segops reads only files")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"
