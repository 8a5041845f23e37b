"""A set of files written under temporary names, made durable, then renamed into place.

Below the output folder (`base`), nothing is written through a symlink: every folder on the
way is opened with O_NOFOLLOW relative to the one above it (created when missing), and each
file is created exclusively, O_NOFOLLOW, mode 0600, in the folder so opened. A symlink
planted in the output tree is refused instead of followed out of it. The output folder
itself may be a symlink: it is configuration, checked where the connection is loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import IO

from segops.errors import DestinationError

_BUFFER = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


class AtomicFiles:
    """Stage files next to their final paths; `commit` makes them all durable and visible.

    Nothing appears under a final name before `commit`, so a failure half-way (a bad key, a
    full disk) leaves the previous files, not a mix. Use as a context manager: leaving it by
    an exception removes the temporary files. With `base`, files go only below it.
    """

    def __init__(self, base: Path | None = None) -> None:
        self._base = base
        self._staged: list[tuple[IO[bytes], str, Path, int]] = []  # file, temp, final, dir fd
        self._dirs: dict[Path, int] = {}  # folder -> open fd, closed at the end
        self._changed: set[int] = set()  # fds of the folders whose entries changed
        self._kept: list[Path] = []  # files already holding what was to be written

    def open(self, final: Path) -> IO[bytes]:
        """Return a new binary file that `commit` will move to `final`."""
        folder = self._folder(final.parent)
        temp = f".{final.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(temp, _FILE_FLAGS, 0o600, dir_fd=folder)
        except OSError as exc:
            raise DestinationError(f"cannot write {final}: {exc.strerror}") from exc
        handle = os.fdopen(fd, "wb", buffering=_BUFFER)
        self._staged.append((handle, temp, final, folder))
        return handle

    def write_json(self, final: Path, document: object) -> None:
        """Stage `document` as indented JSON text at `final`.

        A file that holds these bytes already (an earlier destination of the run wrote the
        same import body) is kept as it is: `commit` lists it without writing it again.
        """
        data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
        if self._holds(final, data):
            self._kept.append(final)
            return
        self.open(final).write(data)

    def _holds(self, final: Path, data: bytes) -> bool:
        folder = self._folder(final.parent)
        try:
            fd = os.open(final.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except OSError:
            return False
        try:
            with os.fdopen(fd, "rb") as handle:
                return handle.read(len(data) + 1) == data
        except OSError:
            return False

    def commit(self) -> tuple[Path, ...]:
        """Flush and fsync every staged file, rename each into place, fsync the folders.

        Only the folders whose entries changed are synced: those the files were renamed
        into, and those in which a folder on the way was created (a folder that was already
        there is as durable as it was; syncing it again cost four fsyncs a destination).
        """
        try:
            for handle, temp, _, folder in self._staged:
                _finish(handle, temp, folder)
            for _, temp, final, folder in self._staged:
                # Renaming over a symlink replaces the link itself; nothing is followed.
                os.replace(temp, final.name, src_dir_fd=folder, dst_dir_fd=folder)
                self._changed.add(folder)
            for fd in self._changed:
                os.fsync(fd)
        except OSError as exc:
            raise DestinationError(f"cannot write {exc.filename}: {exc.strerror}") from exc
        written = tuple(final for _, _, final, _ in self._staged) + tuple(self._kept)
        self._staged.clear()
        self._kept.clear()
        self._close_dirs()
        return written

    def abort(self) -> None:
        """Close and delete every staged temporary file."""
        for handle, temp, _, folder in self._staged:
            with contextlib.suppress(OSError):
                handle.close()
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder)
        self._staged.clear()
        self._kept.clear()
        self._close_dirs()

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()  # after a commit there is nothing left to abort

    def _folder(self, folder: Path) -> int:
        """Return an open fd of `folder`, reached from the base without following a symlink."""
        if folder in self._dirs:
            return self._dirs[folder]
        base = self._base if self._base is not None else folder
        if folder != base and not folder.is_relative_to(base):
            raise DestinationError(f"cannot write {folder}: it is outside {base}")
        try:
            created = not base.is_dir()
            base.mkdir(parents=True, exist_ok=True)
            fd = self._dirs.get(base)
            if fd is None:
                fd = self._dirs[base] = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
            if created:  # as before: its own entries are synced, not those of its parents
                self._changed.add(fd)
            current = base
            for part in folder.relative_to(base).parts:
                current = current / part
                fd = self._dirs.get(current) or self._child(fd, part, current)
        except NotADirectoryError as exc:
            raise DestinationError(f"cannot write under {folder}: {exc.strerror}") from exc
        except OSError as exc:
            raise DestinationError(f"cannot create {folder}: {exc.strerror}") from exc
        return fd

    def _child(self, parent: int, name: str, path: Path) -> int:
        try:
            os.mkdir(name, 0o700, dir_fd=parent)  # what lands here is personal data
        except FileExistsError:
            pass
        else:
            self._changed.add(parent)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if os.path.islink(path):
                raise DestinationError(
                    f"refusing to write through {path}: it is a symlink inside the output folder"
                ) from exc
            raise
        self._dirs[path] = fd
        return fd

    def _close_dirs(self) -> None:
        for fd in self._dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs.clear()
        self._changed.clear()


def _finish(handle: IO[bytes], temp: str, folder: int) -> None:
    """Flush, fsync and close `handle` (file `temp` in `folder`), even if it was closed."""
    if handle.closed:  # a writer may close a file it is done with: sync it by name
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
