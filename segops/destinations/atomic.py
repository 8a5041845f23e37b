"""A set of files written under temporary names, made durable, then renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from segops._fs import fsync_path
from segops.errors import DestinationError

_BUFFER = 1 << 20


class AtomicFiles:
    """Stage files next to their final paths; `commit` makes them all durable and visible.

    Nothing appears under a final name before `commit`, so a failure half-way (a bad key, a
    full disk) leaves the previous files, not a mix. Use as a context manager: leaving it by
    an exception removes the temporary files.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[IO[bytes], str, Path]] = []  # (file, temp path, final path)
        self._new_dirs: list[Path] = []

    def open(self, final: Path) -> IO[bytes]:
        """Return a new binary file that `commit` will move to `final`."""
        self._make_dirs(final.parent)
        try:
            fd, temp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        except OSError as exc:
            raise DestinationError(f"cannot write {final}: {exc.strerror}") from exc
        handle = os.fdopen(fd, "wb", buffering=_BUFFER)
        self._staged.append((handle, temp, final))
        return handle

    def write_json(self, final: Path, document: object) -> None:
        """Stage `document` as indented JSON text at `final`."""
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        self.open(final).write(text.encode())

    def commit(self) -> tuple[Path, ...]:
        """Flush and fsync every staged file, rename each into place, fsync the folders."""
        try:
            for handle, temp, _ in self._staged:
                finish(handle, temp)
            for _, temp, final in self._staged:
                os.replace(temp, final)
            folders = {final.parent for _, _, final in self._staged}
            folders.update(d.parent for d in self._new_dirs)
            for folder in sorted(folders):
                fsync_path(folder)
        except OSError as exc:
            raise DestinationError(f"cannot write {exc.filename}: {exc.strerror}") from exc
        written = tuple(final for _, _, final in self._staged)
        self._staged.clear()
        return written

    def abort(self) -> None:
        """Close and delete every staged temporary file."""
        for handle, temp, _ in self._staged:
            with contextlib.suppress(OSError):
                handle.close()
            Path(temp).unlink(missing_ok=True)
        self._staged.clear()

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()  # after a commit there is nothing left to abort

    def _make_dirs(self, folder: Path) -> None:
        missing = []
        while not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            try:
                new.mkdir(exist_ok=True)
            except OSError as exc:
                raise DestinationError(f"cannot create {new}: {exc.strerror}") from exc
            self._new_dirs.append(new)


def finish(handle: IO[bytes], path: str) -> None:
    """Flush, fsync and close `handle` (a file of `path`), even if it was closed already."""
    if handle.closed:
        fsync_path(path)
        return
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
