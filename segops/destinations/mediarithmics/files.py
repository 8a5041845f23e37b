"""The files form of mediarithmics: the requests a change would send, written to a folder.

Under the run folder::

    mediarithmics/datamart-<datamart_id>/document_import.json   the import creation body
    mediarithmics/datamart-<datamart_id>/<address>.ndjson        USER_SEGMENT commands (or .csv)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby, islice, pairwise
from pathlib import Path
from typing import IO, Any

from segops.destinations import REMOVE
from segops.destinations.mediarithmics import commands as mics
from segops.destinations.platform import FilesOut
from segops.errors import DestinationError
from segops.model import DestinationChange, KeyEncoding, MemberRow, Settings

_LINES_PER_WRITE = 4096  # encode and write command lines in batches, not one by one


@dataclass(frozen=True, slots=True)
class _CommandFile:
    target: mics.CommandTarget
    path: Path
    columns: tuple[str, ...]  # CSV only


def write_commands(change: DestinationChange, rows: Iterable[MemberRow], out: FilesOut) -> None:
    """Write the document import body and the command file(s) of `change`."""
    files = _CommandFiles(change, out)
    for removing, group in groupby(rows, key=_is_remove):
        target, handle = files.open(removing)
        lines = mics.command_lines(target.target, group, files.mime, target.columns or None)
        while batch := "".join(islice(lines, _LINES_PER_WRITE)):
            handle.write(batch.encode())


def write_command_batches(change: DestinationChange, batches: Iterable[Any], out: FilesOut) -> None:
    """Write the same files as `write_commands`, from the delta as Arrow record batches."""
    from segops.destinations.mediarithmics import columns

    files = _CommandFiles(change, out)
    plain = change.encoding is KeyEncoding.HEX  # keys are lower-case hex: nothing to escape
    with _Writer() as writer:
        for batch in batches:
            for removing, run in _runs(batch):
                target, handle = files.open(removing)
                if files.mime == mics.NDJSON:
                    lines = columns.ndjson_column(
                        target.target, run, removing=removing, plain_keys=plain
                    )
                else:
                    lines = columns.csv_column(
                        target.target, run, target.columns, removing=removing, plain_keys=plain
                    )
                writer.write(handle, columns.line_bytes(lines))


class _Writer:
    """Write each chunk on a thread of its own while the next one is built.

    Arrow's kernels and the file's write both release the GIL, so formatting a batch and
    writing the one before it overlap. One write is in flight at a time, in order; an
    error of a write is raised by the next `write` or at the end. The thread starts with
    the second chunk: a small delta is one chunk, written at the end on the caller's
    thread (starting a thread costs more than such a write).
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[int] | None = None
        self._held: tuple[IO[bytes], memoryview] | None = None

    def write(self, handle: IO[bytes], data: memoryview) -> None:
        if self._pool is None and self._held is None:
            self._held = (handle, data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="segops-files")
        self._wait()
        if self._held is not None:
            held, self._held = self._held, None
            self._pending = self._pool.submit(held[0].write, held[1])
            self._wait()
        self._pending = self._pool.submit(handle.write, data)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, failed: type[BaseException] | None, *_: object) -> None:
        try:
            self._wait()
            if self._held is not None and failed is None:
                held, self._held = self._held, None
                held[0].write(held[1])
        except Exception:
            if failed is None:  # else the error that stopped the loop is the one to raise
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown()


class _CommandFiles:
    """The command files of one change: where removes and adds go, each opened once."""

    def __init__(self, change: DestinationChange, out: FilesOut) -> None:
        self.mime = mime = str(out.connection.option("mime_type", mics.NDJSON))
        self._body = mics.document_import_body(mime, f"segops {out.connection.name} {out.run}")
        self._address = change.address
        self._out = out
        before = _command_file(out.folder, change.settings_before, change.address, mime, ())
        after = _command_file(
            out.folder, change.settings_after, change.address, mime, change.attributes
        )
        if before and after and before.path == after.path:
            # One file for both: the DELETEs leave the optional columns empty. A CSV file has
            # one header, so when the identifier or segment field changed the removes get a
            # file of their own.
            shared = mics.csv_columns(
                before.target,
                expiration_ts="expiration_ts" in change.attributes,
                data_bag="data_bag" in change.attributes,
            )
            if shared == after.columns or not after.columns:
                before = _CommandFile(before.target, after.path, after.columns)
            else:
                before = _CommandFile(
                    before.target, before.path.with_suffix(".remove.csv"), before.columns
                )
        self._before, self._after = before, after
        self._handles: dict[Path, IO[bytes]] = {}

    def open(self, removing: bool) -> tuple[_CommandFile, IO[bytes]]:
        """Return the file the removes (or the adds and updates) go to, and its handle."""
        target = self._before if removing else self._after
        if target is None:
            raise DestinationError(
                f"{self._address}: {'removes' if removing else 'adds'} "
                "to send but no settings to send them with"
            )
        handle = self._handles.get(target.path)
        if handle is None:
            if not any(p.parent == target.path.parent for p in self._handles):
                self._out.files.write_json(target.path.parent / "document_import.json", self._body)
            handle = self._handles[target.path] = self._out.files.open(target.path)
            if target.columns:
                handle.write(mics.csv_header(target.columns).encode())
        return target, handle


def _runs(batch: Any) -> Iterator[tuple[bool, Any]]:
    """Split a record batch of delta rows into runs of removes and of adds/updates."""
    import pyarrow.compute as pc

    n = batch.num_rows
    if not n:
        return
    removing = pc.equal(batch.column("op"), REMOVE)
    flips = pc.indices_nonzero(pc.not_equal(removing.slice(1), removing.slice(0, n - 1)))
    bounds = [0, *(i + 1 for i in flips.to_pylist()), n]
    for start, end in pairwise(bounds):
        yield bool(removing[start].as_py()), batch.slice(start, end - start)


def _command_file(
    run_dir: Path, settings: Settings | None, address: str, mime: str, attributes: tuple[str, ...]
) -> _CommandFile | None:
    """Return where the commands sent with `settings` go.

    A CSV file's columns come from the attributes the destination declares, not from the
    rows, so its header does not depend on the data (removes carry none, see
    mediarithmics.commands).
    """
    if settings is None:
        return None
    target = mics.CommandTarget.from_settings(settings)
    ext = mics.FILE_EXTENSIONS.get(mime)
    if ext is None:
        raise DestinationError(f"mime_type {mime!r} is not one of {mics.MIME_TYPES}")
    folder = run_dir / "mediarithmics" / f"datamart-{target.datamart_id}"
    columns: tuple[str, ...] = ()
    if mime == mics.CSV:
        columns = mics.csv_columns(
            target,
            expiration_ts="expiration_ts" in attributes,
            data_bag="data_bag" in attributes,
        )
    return _CommandFile(target, folder / f"{address}.{ext}", columns)


def _is_remove(row: MemberRow) -> bool:
    return row.op == REMOVE
