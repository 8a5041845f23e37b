"""The `files` destination: write the requests a platform would receive to a folder.

Layout under `<root>/<connection path>/<run>/`:

    mediarithmics/datamart-<datamart_id>/document_import.json   the import creation body
    mediarithmics/datamart-<datamart_id>/<address>.ndjson        USER_SEGMENT commands (or .csv)
    moengage/<address>/NN-<operation>.json                       method, path, headers, body
    moengage/<address>/NN-<operation>.csv                        the member file its body names

Files appear only once all of a destination's files are written and fsynced (see atomic.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby, islice
from operator import attrgetter
from pathlib import Path
from typing import IO

from segops.destinations import ADD, REMOVE, UPDATE, ApplyResult, MemberRow, Sent
from segops.destinations.atomic import AtomicFiles
from segops.destinations.mediarithmics import commands as mics
from segops.destinations.moengage import requests as moe
from segops.errors import DestinationError
from segops.model import Connection, DestinationChange, Platform, Settings

DEFAULT_PATH = "out"
_LINES_PER_WRITE = 4096  # encode and write command lines in batches, not one by one


class FilesDestination:
    """Write each change as the files its target platform would receive, under one run folder."""

    def __init__(
        self, root: Path, connection: Connection, run: str, max_file_bytes: int = moe.MAX_FILE_BYTES
    ) -> None:
        if not run or run in (".", "..") or "/" in run or "\\" in run:
            raise DestinationError(f"run name {run!r} is not a single folder name")
        self._root = root
        self._connection = connection
        self._run = run
        self._max_file_bytes = max_file_bytes  # MoEngage member files only

    @property
    def run_dir(self) -> Path:
        return self._root / str(self._connection.option("path", DEFAULT_PATH)) / self._run

    def apply(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]]
    ) -> ApplyResult:
        """Write the files of `change` and return what they hold once they are durable."""
        tally = {REMOVE: 0, ADD: 0, UPDATE: 0}
        target = self._connection.target
        if target not in (Platform.MEDIARITHMICS, Platform.MOENGAGE):
            raise DestinationError(
                f"{change.address}: the files connection "
                f"{self._connection.name!r} has no target platform"
            )
        try:
            with AtomicFiles() as files:
                if target is Platform.MEDIARITHMICS:
                    self._write_mediarithmics(change, _tallied(rows(), tally), files)
                else:
                    self._write_moengage(change, _tallied(rows(), tally), files)
                    tally[UPDATE] = 0  # MoEngage has no per-member attributes to update
                written = tuple(self._relative(p) for p in files.commit())
        except OSError as exc:
            raise DestinationError(f"{change.address}: cannot write files: {exc}") from exc
        sent = Sent(add=tally[ADD], remove=tally[REMOVE], update=tally[UPDATE])
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

    # mediarithmics

    def _write_mediarithmics(
        self, change: DestinationChange, rows: Iterable[MemberRow], files: AtomicFiles
    ) -> None:
        mime = str(self._connection.option("mime_type", mics.NDJSON))
        body = mics.document_import_body(mime, f"segops {self._connection.name} {self._run}")
        before = self._command_file(change.settings_before, change.address, mime, ())
        after = self._command_file(change.settings_after, change.address, mime, change.attributes)
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
        handles: dict[Path, IO[bytes]] = {}
        for removing, group in groupby(rows, key=_is_remove):
            target = before if removing else after
            if target is None:
                raise DestinationError(
                    f"{change.address}: {'removes' if removing else 'adds'} "
                    "to send but no settings to send them with"
                )
            handle = handles.get(target.path)
            if handle is None:
                if not any(p.parent == target.path.parent for p in handles):
                    files.write_json(target.path.parent / "document_import.json", body)
                handle = handles[target.path] = files.open(target.path)
                if target.columns:
                    handle.write(mics.csv_header(target.columns).encode())
            lines = mics.command_lines(target.target, group, mime, target.columns or None)
            while batch := "".join(islice(lines, _LINES_PER_WRITE)):
                handle.write(batch.encode())

    def _command_file(
        self, settings: Settings | None, address: str, mime: str, attributes: tuple[str, ...]
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
        folder = self.run_dir / "mediarithmics" / f"datamart-{target.datamart_id}"
        columns: tuple[str, ...] = ()
        if mime == mics.CSV:
            columns = mics.csv_columns(
                target,
                expiration_ts="expiration_ts" in attributes,
                data_bag="data_bag" in attributes,
            )
        return _CommandFile(target, folder / f"{address}.{ext}", columns)

    # MoEngage

    def _write_moengage(
        self, change: DestinationChange, rows: Iterable[MemberRow], files: AtomicFiles
    ) -> None:
        before = _segment(change.settings_before)
        after = _segment(change.settings_after)
        create = _needs_create(change.settings_before, change.settings_after)
        steps = _Steps(
            self.run_dir / "moengage" / change.address,
            files,
            self._max_file_bytes,
            _callback_url(self._connection),
        )
        for op, group in groupby(rows, key=attrgetter("op")):
            if op == UPDATE:
                continue  # groupby skips the group's rows
            segment = before if op == REMOVE else after
            if segment is None:
                raise DestinationError(
                    f"{change.address}: {op} rows to send but no settings to send them with"
                )
            keys = (row.key for row in group)
            if op == REMOVE:
                steps.write(moe.REMOVE_USERS, segment, keys)
            else:
                steps.write(
                    moe.CREATE if create and not steps.created else moe.ADD_USERS, segment, keys
                )
        if create and after is not None and not steps.created:
            steps.write(moe.CREATE, after, ())  # the segment must exist for later add-users


@dataclass(frozen=True, slots=True)
class _CommandFile:
    target: mics.CommandTarget
    path: Path
    columns: tuple[str, ...]  # CSV only


class _Steps:
    """Numbered MoEngage requests, each a JSON request next to the member CSV it names."""

    def __init__(
        self, folder: Path, files: AtomicFiles, max_bytes: int, callback_url: str | None
    ) -> None:
        self.folder, self.files, self.max_bytes = folder, files, max_bytes
        self.callback_url = callback_url
        self.count = 0
        self.created = False

    def write(self, operation: str, segment: moe.FileSegment, keys: Iterable[str]) -> None:
        """Write one step per member file of `keys`; a create that splits goes on as add-users."""
        handle: IO[bytes] | None = None
        part = -1
        for chunk in moe.csv_chunks(keys, self.max_bytes):
            if chunk.part != part:
                if handle is not None:
                    handle.close()  # fsynced by the commit; frees the descriptor now
                part = chunk.part
                handle = self._open(
                    operation if part == 0 or operation != moe.CREATE else moe.ADD_USERS, segment
                )
            assert handle is not None
            handle.write(chunk.data)
        if handle is None and operation == moe.CREATE:
            handle = self._open(operation, segment)  # no members yet: an empty file
        if handle is not None:
            handle.close()

    def _open(self, operation: str, segment: moe.FileSegment) -> IO[bytes]:
        self.count += 1
        self.created = self.created or operation == moe.CREATE
        stem = f"{self.count:02d}-{operation}"
        member_file = self.folder / f"{stem}.csv"
        handle = self.files.open(member_file)
        method, path = moe.ENDPOINTS[operation]
        url = member_file.resolve().as_uri()
        self.files.write_json(
            self.folder / f"{stem}.json",
            {
                "method": method,
                "path": path,
                "headers": {"Content-Type": "application/json"},
                "body": moe.request_body(operation, segment, url, self.callback_url),
            },
        )
        return handle


def _tallied(rows: Iterable[MemberRow], tally: dict[str, int]) -> Iterator[MemberRow]:
    """Yield `rows`, counting them per operation in `tally`."""
    for row in rows:
        try:
            tally[row.op] += 1
        except KeyError:
            raise DestinationError(f"unknown member row operation {row.op!r}") from None
        yield row


def _is_remove(row: MemberRow) -> bool:
    return row.op == REMOVE


def _segment(settings: Settings | None) -> moe.FileSegment | None:
    return None if settings is None else moe.FileSegment.from_settings(settings)


def _needs_create(before: Settings | None, after: Settings | None) -> bool:
    """Return whether the members sent with `after` go to a segment that must be created.

    A `cs_id` names a segment that exists; the same name on the same connection is the segment
    that was created before (creating it again fails with 409, reference §4). Only a new name,
    or a new connection, without a `cs_id` means a new segment.
    """
    if after is None:
        return False
    if before is None:
        return True
    old, new = dict(before), dict(after)
    if new.get("segment.cs_id") not in (None, ""):
        return False
    return any(old.get(k) != new.get(k) for k in ("connection", "segment.name"))


def _callback_url(connection: Connection) -> str | None:
    url = connection.option("callback_url")
    return str(url) if url else None
