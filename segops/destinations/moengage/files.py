"""The files form of MoEngage: the requests a change would send, written to a folder.

Under the run folder::

    moengage/<address>/NN-<operation>.json   method, path, headers, body
    moengage/<address>/NN-<operation>.csv    the member file its body names
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import IO

from segops.destinations import ADD, REMOVE, UPDATE, Sent
from segops.destinations.atomic import AtomicFiles
from segops.destinations.moengage import requests as moe
from segops.destinations.platform import FilesOut
from segops.errors import DestinationError
from segops.model import Connection, DestinationChange, MemberRow, Settings


def write_requests(change: DestinationChange, rows: Iterable[MemberRow], out: FilesOut) -> Sent:
    """Write one numbered request (and its member file) per operation `change` takes.

    Returns what was written: updates are skipped, MoEngage has no per-member attributes.
    """
    tally = {REMOVE: 0, ADD: 0}
    before = _segment(change.settings_before)
    after = _segment(change.settings_after)
    create = _needs_create(change.settings_before, change.settings_after)
    steps = _Steps(
        out.folder / "moengage" / change.address,
        out.files,
        out.max_file_bytes or moe.MAX_FILE_BYTES,
        _callback_url(out.connection),
    )
    for op, group in groupby(rows, key=attrgetter("op")):
        if op == UPDATE:
            continue  # groupby skips the group's rows
        group = _counted(group, tally, op)
        segment = before if op == REMOVE else after
        if segment is None:
            raise DestinationError(
                f"{change.address}: {op} rows to send but no settings to send them with"
            )
        keys = (row.key for row in group)
        if op == REMOVE:
            steps.write(moe.REMOVE_USERS, segment, keys)
        elif change.full:  # every desired member: the first file replaces the segment's users
            steps.write(moe.REPLACE if not steps.replaced else moe.ADD_USERS, segment, keys)
        else:
            operation = moe.CREATE if create and not steps.created else moe.ADD_USERS
            steps.write(operation, segment, keys)
    if create and after is not None and not steps.created and not change.full:
        steps.write(moe.CREATE, after, ())  # the segment must exist for later add-users
    return Sent(add=tally[ADD], remove=tally[REMOVE])


def _counted(rows: Iterable[MemberRow], tally: dict[str, int], op: str) -> Iterator[MemberRow]:
    for row in rows:
        tally[op] = tally.get(op, 0) + 1
        yield row


class _Steps:
    """Numbered MoEngage requests, each a JSON request next to the member CSV it names."""

    def __init__(
        self, folder: Path, files: AtomicFiles, max_bytes: int, callback_url: str | None
    ) -> None:
        self.folder, self.files, self.max_bytes = folder, files, max_bytes
        self.callback_url = callback_url
        self.count = 0
        self.created = False
        self.replaced = False

    def write(self, operation: str, segment: moe.FileSegment, keys: Iterable[str]) -> None:
        """Write one step per member file of `keys`; a create that splits goes on as add-users."""
        handle: IO[bytes] | None = None
        part = -1
        for chunk in moe.csv_chunks(keys, self.max_bytes):
            if chunk.part != part:
                if handle is not None:
                    handle.close()  # fsynced by the commit; frees the descriptor now
                part = chunk.part
                first = part == 0 or operation not in (moe.CREATE, moe.REPLACE)
                handle = self._open(operation if first else moe.ADD_USERS, segment)
            assert handle is not None
            handle.write(chunk.data)
        if handle is None and operation == moe.CREATE:
            handle = self._open(operation, segment)  # no members yet: an empty file
        if handle is not None:
            handle.close()

    def _open(self, operation: str, segment: moe.FileSegment) -> IO[bytes]:
        self.count += 1
        self.created = self.created or operation == moe.CREATE
        self.replaced = self.replaced or operation == moe.REPLACE
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
