"""Digests of every file a plan is made from, for the stale-plan check.

Source files can be large (650 MB for 10 million hashes), so their digests are computed
in a background thread while the member engine reads the same files: hashlib releases
the GIL, DuckDB too, and the digest costs next to nothing in wall time that way.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from segops._fs import NotRegularFileError, open_regular
from segops.errors import Problem, SourceError
from segops.model import InputFile, Workspace


def digest_file(path: Path) -> str:
    """Return the sha256 of a file's bytes."""
    with open_regular(path) as handle:  # a named pipe would block the digest thread forever
        return hashlib.file_digest(handle, "sha256").hexdigest()


class InputDigests:
    """Start digesting a workspace's data files at once; `result()` waits for them."""

    def __init__(self, workspace: Workspace) -> None:
        self._workspace = workspace
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segops-digest")
        root = Path(workspace.root)
        self._pending: list[tuple[str, Future[str]]] = [
            (name, self._pool.submit(digest_file, root / name)) for name in workspace.data_files
        ]
        self._pool.shutdown(wait=False)

    def result(self) -> tuple[InputFile, ...]:
        """Return every input (YAML and data files) with its digest, sorted by path."""
        data = []
        for name, future in self._pending:
            try:
                data.append(InputFile(name, future.result()))
            except NotRegularFileError as exc:
                message = f"is {exc.kind}, not a regular file: a source must be a data file"
                raise SourceError([Problem(name, message)]) from None
            except OSError as exc:
                raise SourceError([Problem(name, f"cannot read: {exc.strerror}")]) from None
        return tuple(sorted((*self._workspace.inputs, *data), key=lambda f: f.path))


def all_inputs(workspace: Workspace) -> tuple[InputFile, ...]:
    """Return every input with its digest, computed now."""
    return InputDigests(workspace).result()
