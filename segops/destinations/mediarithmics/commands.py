"""mediarithmics USER_SEGMENT command lines (NDJSON or CSV) and the document import body; no I/O.

One command per member row (reference §5.1): `UPDATE` for an add or update, `DELETE` for a
remove. Every line carries `expiration_duration`, exactly one identifier (`user_account_id`
with its `compartment_id` counting as one) and exactly one segment reference, always the
singular `segment_id` or `segment_technical_name`. A `DELETE` ends the user/segment
relationship, so it carries no `data_bag` or `expiration_ts`: they would have no effect, and
leaving them out sends less personal data.

Lines are built as strings from pre-computed fragments, one small format per row, so that ten
million rows stream through in seconds without ever being held in memory together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Final

from segops.destinations import ADD, REMOVE, UPDATE, MemberRow
from segops.errors import DestinationError
from segops.model import Scalar, Settings

NDJSON: Final = "APPLICATION_X_NDJSON"
CSV: Final = "TEXT_CSV"
MIME_TYPES: Final = (NDJSON, CSV)
# Content-Type of an execution upload, per mime_type (reference §5).
CONTENT_TYPES: Final = {NDJSON: "application/x-ndjson", CSV: "text/csv"}
FILE_EXTENSIONS: Final = {NDJSON: "ndjson", CSV: "csv"}

IDENTIFIER_KINDS: Final = ("email_hash", "user_agent_id", "user_account_id")
SEGMENT_FIELDS: Final = ("segment_id", "segment_technical_name")


@dataclass(frozen=True, slots=True)
class CommandTarget:
    """What every command line of one destination carries, read from its settings."""

    datamart_id: str
    expiration_duration: int
    identifier_kind: str  # one of IDENTIFIER_KINDS
    compartment_id: str | None  # with user_account_id only
    segment_field: str  # one of SEGMENT_FIELDS
    segment_value: str

    @classmethod
    def from_settings(cls, settings: Settings) -> CommandTarget:
        """Return the target of `settings`; raise DestinationError when one is missing or bad."""
        values = dict(settings)
        kind = _text(values, "identifier.kind")
        if kind not in IDENTIFIER_KINDS:
            raise DestinationError(f"identifier.kind {kind!r} is not one of {IDENTIFIER_KINDS}")
        compartment = _text(values, "compartment_id") if kind == "user_account_id" else None
        refs = [f for f in SEGMENT_FIELDS if values.get(f) is not None]
        if len(refs) != 1:
            raise DestinationError("exactly one of segment_id / segment_technical_name is needed")
        duration = values.get("expiration_duration", 0)
        if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
            raise DestinationError(f"expiration_duration {duration!r} is not an integer >= 0")
        return cls(
            _text(values, "datamart_id"),
            duration,
            kind,
            compartment,
            refs[0],
            _text(values, refs[0]),
        )

    @property
    def identifier_fields(self) -> tuple[str, ...]:
        return (
            (self.identifier_kind, "compartment_id")
            if self.compartment_id
            else (self.identifier_kind,)
        )


def _text(values: dict[str, Scalar], key: str) -> str:
    value = values.get(key)
    if value is None or isinstance(value, bool) or value == "":
        raise DestinationError(f"setting {key!r} is missing or empty")
    return str(value)


def document_import_body(mime_type: str, name: str) -> dict[str, str]:
    """Return the JSON body that creates a USER_SEGMENT document import (reference §4)."""
    if mime_type not in MIME_TYPES:
        raise DestinationError(f"mime_type {mime_type!r} is not one of {MIME_TYPES}")
    return {
        "document_type": "USER_SEGMENT",
        "mime_type": mime_type,
        "encoding": "utf-8",
        "name": name,
    }


def _operation(op: str) -> str:
    if op == REMOVE:
        return "DELETE"
    if op == ADD or op == UPDATE:
        return "UPDATE"
    raise DestinationError(f"unknown member row operation {op!r}")


def ndjson_fragments(target: CommandTarget) -> tuple[str, str, str, str]:
    """Return the fixed text of `target`'s NDJSON lines: DELETE head, UPDATE head, id, tail.

    A line is a head, `expiration_ts` (UPDATE only), the id fragment and the JSON-encoded
    key, the tail, `data_bag` (UPDATE only) and "}\n".
    """
    enc = encode_basestring
    duration = f',"expiration_duration":{target.expiration_duration}'
    tail = f",{enc(target.segment_field)}:{enc(target.segment_value)}"
    if target.compartment_id is not None:
        tail = f',"compartment_id":{enc(target.compartment_id)}{tail}'
    return (
        '{"operation":"DELETE"' + duration,
        '{"operation":"UPDATE"' + duration,
        f",{enc(target.identifier_kind)}:",
        tail,
    )


def ndjson_lines(target: CommandTarget, rows: Iterable[MemberRow]) -> Iterator[str]:
    """Yield one compact JSON command per row, each terminated by "\\n".

    Each line equals `json.dumps(command, ensure_ascii=False, separators=(",", ":"))` of the
    command in the fixed field order: operation, expiration_duration, expiration_ts,
    identifier field(s), segment reference, data_bag.
    """
    enc = encode_basestring  # the encoder json.dumps uses for str when ensure_ascii=False
    head_delete, head_update, id_head, tail = ndjson_fragments(target)
    for row in rows:
        op = row.op
        if op == REMOVE:
            yield f"{head_delete}{id_head}{enc(row.key)}{tail}}}\n"
        elif op == ADD or op == UPDATE:
            ts, bag = row.expiration_ts, row.data_bag
            ts_part = "" if ts is None else f',"expiration_ts":{ts}'
            bag_part = "" if bag is None else ',"data_bag":' + enc(bag)
            yield f"{head_update}{ts_part}{id_head}{enc(row.key)}{tail}{bag_part}}}\n"
        else:
            _operation(op)  # raises


def csv_columns(target: CommandTarget, *, expiration_ts: bool, data_bag: bool) -> tuple[str, ...]:
    """Return the fixed column set of one CSV command file, in field order."""
    return (
        ("operation", "expiration_duration")
        + (("expiration_ts",) if expiration_ts else ())
        + target.identifier_fields
        + (target.segment_field,)
        + (("data_bag",) if data_bag else ())
    )


# What makes csv.writer (QUOTE_MINIMAL, "\n" line terminator) quote a cell.
_NEEDS_QUOTES = re.compile(r'[,"\r\n]').search


def csv_cell(value: str | int | None) -> str:
    """Return `value` as one CSV cell, quoted exactly as csv.writer would (RFC 4180)."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if _NEEDS_QUOTES(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def csv_header(columns: tuple[str, ...]) -> str:
    """Return the header line of a CSV command file with `columns`."""
    return ",".join(map(csv_cell, columns)) + "\n"


def csv_fragments(target: CommandTarget, columns: tuple[str, ...]) -> tuple[str, str, str, str]:
    """Return the fixed text of `target`'s CSV lines: DELETE head and tail, UPDATE head, tail.

    A DELETE line is its head, the key's cell and its tail (the optional cells left empty);
    an UPDATE line is its head, `,expiration_ts` (when a column), a comma and the key's
    cell, the tail, `,data_bag` (when a column) and "\n".
    """
    ids = (target.compartment_id,) if target.compartment_id is not None else ()
    tail = "".join("," + csv_cell(v) for v in (*ids, target.segment_value))
    duration = f",{target.expiration_duration}"
    delete_head = "DELETE" + duration + ("," if "expiration_ts" in columns else "") + ","
    delete_tail = tail + ("," if "data_bag" in columns else "") + "\n"
    return delete_head, delete_tail, "UPDATE" + duration, tail


def csv_rows(
    target: CommandTarget, rows: Iterable[MemberRow], columns: tuple[str, ...]
) -> Iterator[str]:
    """Yield one RFC 4180 line per row, in `columns` (from `csv_columns`); absent is empty.

    Each line equals what `csv.writer(f, lineterminator="\n").writerow(cells)` writes (a test
    holds them equal); cells are quoted here because the csv module costs twice as much per row.

    Raises:
        DestinationError: an UPDATE row has a value whose column is not in `columns`.
    """
    with_ts, with_bag = "expiration_ts" in columns, "data_bag" in columns
    delete_head, delete_tail, update_head, tail = csv_fragments(target, columns)
    for row in rows:
        op = row.op
        if op == REMOVE:
            yield delete_head + csv_cell(row.key) + delete_tail
        elif op == ADD or op == UPDATE:
            ts, bag = row.expiration_ts, row.data_bag
            if (ts is not None and not with_ts) or (bag is not None and not with_bag):
                raise DestinationError(
                    "a row has an expiration_ts or data_bag but the CSV file "
                    f"has only the columns {columns}"
                )
            ts_cell = f",{csv_cell(ts)}" if with_ts else ""
            bag_cell = f",{csv_cell(bag)}" if with_bag else ""
            yield f"{update_head}{ts_cell},{csv_cell(row.key)}{tail}{bag_cell}\n"
        else:
            _operation(op)  # raises


def csv_lines(
    target: CommandTarget, rows: Iterable[MemberRow], columns: tuple[str, ...]
) -> Iterator[str]:
    """Yield a whole CSV command file: the header line, then one line per row."""
    yield csv_header(columns)
    yield from csv_rows(target, rows, columns)


def command_lines(
    target: CommandTarget,
    rows: Iterable[MemberRow],
    mime_type: str,
    columns: tuple[str, ...] | None = None,
) -> Iterator[str]:
    """Yield one command line per row in `mime_type`; CSV needs its `columns` (no header here)."""
    if mime_type == NDJSON:
        return ndjson_lines(target, rows)
    if mime_type == CSV:
        if columns is None:
            raise DestinationError("a TEXT_CSV command file needs its column set")
        return csv_rows(target, rows, columns)
    raise DestinationError(f"mime_type {mime_type!r} is not one of {MIME_TYPES}")
