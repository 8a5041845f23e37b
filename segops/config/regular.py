"""Read workspace files only when they are regular files, with messages for problems.

Opening a named pipe for reading blocks until a writer comes, and a device can be read
forever: `segops._fs.open_regular` opens without blocking and looks at what it opened;
this module turns its refusals into the words a workspace problem uses.
"""

from __future__ import annotations

from pathlib import Path

from segops._fs import NotRegularFileError, open_regular


class UnreadableFile(Exception):
    """A file segops will not read; the message says why, without the path."""


def read_regular(path: Path, limit: int) -> bytes:
    """Return at most `limit` bytes from the start of the regular file `path`.

    Raises:
        UnreadableFile: `path` is missing, unreadable or not a regular file.
    """
    try:
        with open_regular(path) as handle:
            return handle.read(limit)
    except NotRegularFileError as error:
        raise UnreadableFile(
            f"is {error.kind}, not a regular file: segops reads only files"
        ) from None
    except OSError as error:
        raise UnreadableFile(f"cannot read: {error.strerror}") from None


def check_regular(path: Path) -> None:
    """Check that `path` is a regular file segops can open.

    Raises:
        UnreadableFile: `path` is missing, unreadable or not a regular file.
    """
    read_regular(path, 0)
