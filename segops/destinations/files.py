"""The `files` platform: write the requests a platform would receive to a folder.

A `files` connection names a `target` platform and a `path`; each change is written by the
target's `write_files` under `<root>/<path>/<run>/` (the built-in layouts are in
mediarithmics/files.py and moengage/files.py). Files appear only once all of a
destination's files are written and fsynced (see atomic.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segops import observe
from segops.destinations import ADD, REMOVE, UPDATE, ApplyContext, ApplyResult, DeltaRows, Sent
from segops.destinations.atomic import AtomicFiles
from segops.destinations.platform import FilesOut, PlatformSpec
from segops.errors import DestinationError
from segops.model import Connection, DestinationChange, MemberRow, Platform

if TYPE_CHECKING:
    from segops.destinations import Destination

DEFAULT_PATH = "out"
_PROGRESS_EVERY = 10_000
log = logging.getLogger("segops.files")


class FilesPlatform(PlatformSpec):
    name = "files"
    title = "files"

    def open(
        self, connection: Connection, secrets: Mapping[str, str], context: ApplyContext
    ) -> Destination:
        return FilesDestination(context.root, connection, context.run)


class FilesDestination:
    """Write each change as the files its target platform would receive, under one run folder."""

    def __init__(
        self,
        root: Path,
        connection: Connection,
        run: str,
        max_file_bytes: int | None = None,
        target: PlatformSpec | None = None,
    ) -> None:
        if not run or run in (".", "..") or "/" in run or "\\" in run:
            raise DestinationError(f"run name {run!r} is not a single folder name")
        self._root = root
        self._connection = connection
        self._run = run
        self._max_file_bytes = max_file_bytes
        self._target = target

    @property
    def _output(self) -> Path:
        """Return the connection's output folder; nothing below it is a symlink segops follows."""
        return self._root / str(self._connection.option("path", DEFAULT_PATH))

    @property
    def run_dir(self) -> Path:
        return self._output / self._run

    def apply(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]]
    ) -> ApplyResult:
        """Write the files of `change` and return what they hold once they are durable."""
        target = self._target or _target_of(self._connection, change)
        tally = {REMOVE: 0, ADD: 0, UPDATE: 0}
        total = change.members.add + change.members.remove + change.members.update
        try:
            with (
                observe.step(f"Writing {change.address}", total, "members") as step,
                AtomicFiles(self._output) as files,
            ):
                out = FilesOut(
                    self.run_dir, files, self._connection, self._run, self._max_file_bytes
                )
                if isinstance(rows, DeltaRows) and target.writes_batches:
                    batches = _tallied_batches(rows.batches(), tally, step)
                    written_rows = target.write_file_batches(change, batches, out)
                else:
                    written_rows = target.write_files(change, _tallied(rows(), tally, step), out)
                written = tuple(self._relative(p) for p in files.commit())
            log.info("%s: wrote %s", change.address, ", ".join(written) or "no file")
        except OSError as exc:
            raise DestinationError(f"{change.address}: cannot write files: {exc}") from exc
        sent = written_rows or Sent(add=tally[ADD], remove=tally[REMOVE], update=tally[UPDATE])
        return ApplyResult(
            change.address,
            True,
            sent,
            written,
            f"wrote {len(written)} files: +{sent.add} -{sent.remove} ~{sent.update}",
        )

    def _relative(self, path: Path) -> str:
        return (
            path.relative_to(self._root).as_posix()
            if path.is_relative_to(self._root)
            else path.as_posix()
        )


def _target_of(connection: Connection, change: DestinationChange) -> PlatformSpec:
    from segops.destinations.registry import platform_spec

    spec = platform_spec(connection.target) if connection.target != Platform.FILES else None
    if spec is None or not spec.writes_files:
        raise DestinationError(
            f"{change.address}: the files connection {connection.name!r} has no target "
            "platform that can be written to files"
        )
    return spec


def _tallied(
    rows: Iterable[MemberRow], tally: dict[str, int], step: observe.Step
) -> Iterator[MemberRow]:
    """Yield `rows`, counting them per operation in `tally` and on `step`."""
    count = 0
    for row in rows:
        try:
            tally[row.op] += 1
        except KeyError:
            raise DestinationError(f"unknown member row operation {row.op!r}") from None
        count += 1
        if count == _PROGRESS_EVERY:  # one call per row would cost more than the writing
            step.advance(count)
            count = 0
        yield row
    step.advance(count)


def _tallied_batches(
    batches: Iterable[Any], tally: dict[str, int], step: observe.Step
) -> Iterator[Any]:
    """Yield Arrow `batches` of delta rows, counting their rows per operation as `_tallied`."""
    import pyarrow.compute as pc

    for batch in batches:
        for count in pc.value_counts(batch.column("op")).to_pylist():
            op, n = count["values"], count["counts"]
            if op not in tally:
                raise DestinationError(f"unknown member row operation {op!r}")
            tally[op] += n
        step.advance(batch.num_rows)
        yield batch


PLATFORM = FilesPlatform()
