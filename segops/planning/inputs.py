"""Pins of what a plan is made from: its definitions, and the data its sources read.

Definitions (segops.yaml, the manifests of the planned segments) are reviewed: `apply FILE`
refuses a plan when one of them moved. Data (source files) refreshes: apply diffs the
segments whose data moved again, behind the safety guards. Only the planned segments'
inputs are pinned, so a plan made with `--segment a` does not depend on segment b's files.

Source files can be large (650 MB for 10 million hashes), so their digests are computed
in a background thread while the member engine reads the same files: the hash releases
the GIL, DuckDB too, and the digest costs little wall time that way. A file's pin is its
BLAKE3 digest ("blake3:<hex>"): a 256-bit cryptographic hash like sha256, at 0.17 s for
650 MB read from the page cache where sha256 (SHA-NI) takes 0.44 s, which is most of a
plan that finds nothing changed (docs/benchmarks.md). Pins recorded as "sha256:<hex>" by
earlier versions differ from every new pin, so the first plan after an upgrade diffs. Sources
outside the workspace are pinned by the member engine while it reads them (objects on S3
by ETag and size, a query's result by a digest of its rows) and handed over to `result`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from segops._fs import NotRegularFileError, blake3_hex, open_regular
from segops.errors import Problem, SourceError
from segops.model import DataPin, InputFile, Workspace
from segops.planning.selection import CONFIG_FILE

_AS_READ = f"{CONFIG_FILE} ("


class Pins(NamedTuple):
    definitions: tuple[InputFile, ...]  # sorted by path
    data: tuple[DataPin, ...]  # sorted by segment, then source


def digest_file(path: Path) -> str:
    """Return the data pin of a file's bytes: "blake3:<hex>"."""
    with open_regular(path) as handle:  # a named pipe would block the digest thread forever
        return f"blake3:{blake3_hex(handle)}"


def definitions(workspace: Workspace, segments: Collection[str]) -> tuple[InputFile, ...]:
    """Return segops.yaml, the manifests and query files of `segments`, digested, by path."""
    planned = [s for s in workspace.segments if s.name in segments]
    wanted = {CONFIG_FILE} | {s.manifest for s in planned}
    wanted |= {s.source.query_file for s in planned if s.source.query_file}
    # segops.yaml as read for an environment or with ${VAR} values (segops.config.environments)
    chosen = [f for f in workspace.inputs if f.path in wanted or f.path.startswith(_AS_READ)]
    return tuple(sorted(chosen, key=lambda f: f.path))


class InputDigests:
    """Start pinning the inputs of `segments` at once; `result()` waits for the data digests."""

    def __init__(self, workspace: Workspace, segments: Collection[str]) -> None:
        self._definitions = definitions(workspace, segments)
        self._sources = sorted(
            (s.name, s.source.path)
            for s in workspace.segments
            if s.name in segments and s.source.path is not None
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segops-digest")
        root = Path(workspace.root)
        self._pending: dict[str, Future[str]] = {
            name: self._pool.submit(digest_file, root / name)
            for name in sorted({path for _, path in self._sources})
        }
        self._pool.shutdown(wait=False)

    def pin(self, path: str) -> str:
        """Return the data pin of one source file, waiting for its digest only."""
        return _wait(path, self._pending[path])

    def result(self, external: Sequence[DataPin] = ()) -> Pins:
        """Return the definitions and the data pins, every digest computed.

        `external` are the pins of what the member engine read from outside the workspace
        (objects on S3 by ETag and size, query results by a digest of their rows).
        """
        digests = {name: _wait(name, future) for name, future in self._pending.items()}
        data = [DataPin(s, path, digests[path]) for s, path in self._sources]
        data += external
        return Pins(self._definitions, tuple(sorted(data, key=lambda p: (p.segment, p.source))))


def _wait(name: str, future: Future[str]) -> str:
    try:
        return future.result()
    except NotRegularFileError as exc:
        message = f"is {exc.kind}, not a regular file: a source must be a data file"
        raise SourceError([Problem(name, message)]) from None
    except OSError as exc:
        raise SourceError([Problem(name, f"cannot read: {exc.strerror}")]) from None


def all_inputs(workspace: Workspace) -> Pins:
    """Return the pins of every segment, computed now."""
    return InputDigests(workspace, {s.name for s in workspace.segments}).result()
