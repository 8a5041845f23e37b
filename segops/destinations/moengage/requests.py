"""MoEngage File Segment API (v2) request bodies and member CSV files; no I/O.

Bodies follow `CreateSegmentRequestV2` / `UpdateSegmentRequestV2` of the OpenAPI document in
the reference folder. Member files follow the reference's CSV rules (§6): one column, one value
per line, no quoting, no special characters, no duplicates, no empty rows, under 150 MB.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Final, NoReturn

from segops.errors import DestinationError
from segops.model import Settings

CREATE: Final = "create"
ADD_USERS: Final = "add-users"
REMOVE_USERS: Final = "remove-users"
REPLACE: Final = "replace"
# operation -> (HTTP method, path)
ENDPOINTS: Final = {
    CREATE: ("POST", "/v2/custom-segments/file-segment"),
    ADD_USERS: ("PUT", "/v2/custom-segments/file-segment/add-users"),
    REMOVE_USERS: ("PUT", "/v2/custom-segments/file-segment/remove-users"),
    REPLACE: ("PUT", "/v2/custom-segments/file-segment/replace"),
}
ATTRIBUTE_TYPES: Final = ("string", "double")
DEFAULT_EXPIRY_DAYS: Final = 365
# The documented limit is "150 MB" a file. Take the smaller reading (150,000,000 bytes, not
# 150 MiB) and keep a margin below it, so that no reading of the limit rejects a file.
MAX_FILE_BYTES: Final = 140_000_000
# Keys are checked and encoded this many at a time: one regex search and one encode per batch
# instead of per key.
_BATCH: Final = 65_536
# Characters that would break the file rules: a comma makes a second column, a quote is
# quoting, a line break makes a second row (or an empty one), and '#' is the reference's own
# example of a forbidden special character.
_FORBIDDEN = re.compile(r'[,"\r\n#]')
_FORBIDDEN_NAMES: Final = {
    ",": "a comma",
    '"': "a quote",
    "\r": "a line break",
    "\n": "a line break",
    "#": "a '#'",
}


@dataclass(frozen=True, slots=True)
class FileSegment:
    """The MoEngage segment a destination fills, read from its settings."""

    name: str
    attribute_name: str
    attribute_type: str  # one of ATTRIBUTE_TYPES
    cs_id: str | None = None
    expiry_days: int = DEFAULT_EXPIRY_DAYS
    # What a create answered 409 (the name exists) does: "fail" naming `segops import`, or
    # "replace" the segment's users with the desired members.
    on_existing: str = "fail"

    @classmethod
    def from_settings(cls, settings: Settings) -> FileSegment:
        """Return the segment of `settings`; raise DestinationError when one is missing or bad."""
        values = dict(settings)
        name, attribute = values.get("segment.name"), values.get("attribute.name")
        kind, cs_id = values.get("attribute.type", "string"), values.get("segment.cs_id")
        expiry = values.get("expiry_days", DEFAULT_EXPIRY_DAYS)
        if not isinstance(name, str) or not name:
            raise DestinationError("setting 'segment.name' is missing or empty")
        if not isinstance(attribute, str) or not attribute:
            raise DestinationError("setting 'attribute.name' is missing or empty")
        if kind not in ATTRIBUTE_TYPES:
            raise DestinationError(f"attribute.type {kind!r} is not one of {ATTRIBUTE_TYPES}")
        if isinstance(expiry, bool) or not isinstance(expiry, int) or not 0 < expiry < 2**31:
            raise DestinationError(f"expiry_days {expiry!r} is not a positive int32")
        on_existing = "replace" if values.get("on_existing") == "replace" else "fail"
        cs_id = None if cs_id in (None, "") else str(cs_id)
        return cls(name, attribute, str(kind), cs_id, expiry, on_existing)


def _base_body(segment: FileSegment, file_url: str, callback_url: str | None) -> dict[str, object]:
    body: dict[str, object] = {
        "name": segment.name,
        "attribute_name": segment.attribute_name,
        "attribute_type": segment.attribute_type,
        "file_url": file_url,
    }
    if callback_url:
        body["callback_url"] = callback_url
    return body


def create_body(
    segment: FileSegment, file_url: str, callback_url: str | None = None
) -> dict[str, object]:
    """Return the body of `POST /v2/custom-segments/file-segment` (CreateSegmentRequestV2)."""
    return {**_base_body(segment, file_url, callback_url), "expiry_time": segment.expiry_days}


def update_body(
    segment: FileSegment, file_url: str, callback_url: str | None = None
) -> dict[str, object]:
    """Return the body of add-users, remove-users or replace (UpdateSegmentRequestV2)."""
    body = _base_body(segment, file_url, callback_url)
    if segment.cs_id is not None:
        body["cs_id"] = segment.cs_id  # wins over `name` on MoEngage's side
    return body


def request_body(
    operation: str, segment: FileSegment, file_url: str, callback_url: str | None = None
) -> dict[str, object]:
    """Return the body of `operation` (a key of ENDPOINTS)."""
    if operation == CREATE:
        return create_body(segment, file_url, callback_url)
    if operation in ENDPOINTS:
        return update_body(segment, file_url, callback_url)
    raise DestinationError(f"unknown MoEngage operation {operation!r}")


@dataclass(frozen=True, slots=True)
class CsvChunk:
    """Bytes to append to member file number `part` (0-based), holding `rows` keys."""

    part: int
    data: bytes
    rows: int


def csv_chunks(keys: Iterable[str], max_bytes: int = MAX_FILE_BYTES) -> Iterator[CsvChunk]:
    """Yield the member files of `keys` as chunks, starting a new part before one would exceed
    `max_bytes`.

    Each key is one line, "\\n" terminated, never quoted. There is no header row: the
    reference's rules describe the file as nothing but values ("a single column", "values
    separated by new lines", "each value must uniquely identify a single user"), so a header
    would be one more value that identifies nobody, or worse, a user whose attribute equals it.
    Keys are not deduplicated here: a delta holds each member once (the member engine collapses
    duplicates), and a set of ten million keys would cost gigabytes.

    Raises:
        DestinationError: a key is empty, holds a comma, quote, line break or '#', or is longer
            than `max_bytes` on its own. The message gives the key's position, never the key.
    """
    part, size, seen = 0, 0, 0
    it = iter(keys)
    while batch := list(islice(it, _BATCH)):
        data = _lines(batch, seen)
        seen += len(batch)
        while data:
            room = max_bytes - size
            if len(data) <= room:
                yield CsvChunk(part, data, data.count(b"\n"))
                size += len(data)
                break
            cut = data.rfind(b"\n", 0, room) + 1  # whole lines that still fit this part
            if cut == 0 and size == 0:
                raise DestinationError(
                    f"a member key is longer than the {max_bytes}-byte file limit on its own"
                )
            if cut:
                yield CsvChunk(part, data[:cut], data.count(b"\n", 0, cut))
                data = data[cut:]
            part, size = part + 1, 0


def _lines(batch: list[str], seen: int) -> bytes:
    """Return `batch` as "\n"-terminated UTF-8 lines; raise when a key breaks the file rules."""
    text = "\n".join(batch) + "\n"
    # substring tests scan a whole batch fifty times faster than a regex
    if (
        any(c in text for c in ',"\r#')
        or text.count("\n") != len(batch)
        or "\n\n" in text
        or not batch[0]
    ):
        _raise_bad_key(batch, seen)
    return text.encode()


def _raise_bad_key(batch: list[str], seen: int) -> NoReturn:
    for i, key in enumerate(batch):
        if not key:
            raise DestinationError(f"member key #{seen + i + 1} is empty")
        bad = _FORBIDDEN.search(key)
        if bad is not None:
            raise DestinationError(
                f"member key #{seen + i + 1} holds {_FORBIDDEN_NAMES[bad.group()]}, which "
                "MoEngage member files cannot carry (single column, no quoting, no special "
                "characters)"
            )
    raise DestinationError(f"member keys #{seen + 1}-#{seen + len(batch)} hold a bad key")
