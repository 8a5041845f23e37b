"""USER_SEGMENT command files and segment membership, as the mediarithmics emulator keeps them.

`parse_commands` turns an execution's body into (line number, command or error) pairs
(reference §5); `check_command` applies the field rules of §5.1; `Membership` applies valid
commands. Error texts name fields, never values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

NDJSON = "APPLICATION_X_NDJSON"
CSV = "TEXT_CSV"
CONTENT_TYPES = {NDJSON: "application/x-ndjson", CSV: "text/csv"}

IDENTIFIERS = ("email_hash", "user_agent_id", "user_account_id")
SINGULAR = ("segment_id", "segment_technical_name")
PLURAL = {"segment_ids": "segment_id", "segment_technical_names": "segment_technical_name"}
FIELDS = frozenset(
    {
        "operation",
        "expiration_duration",
        "expiration_ts",
        "compartment_id",
        "data_bag",
        *IDENTIFIERS,
        *SINGULAR,
        *PLURAL,
    }
)
_INTEGER_FIELDS = ("expiration_duration", "expiration_ts")

DEFAULT_COMPARTMENT = "1"  # used when a user_account_id line has no compartment_id
Parsed = tuple[int, dict[str, Any] | None, str | None]  # (line, command, error)
Member = tuple[str, ...]
SegmentKey = tuple[str, str]
Reject = Callable[[dict[str, Any]], str | None]


class FileError(ValueError):
    """The whole file is unreadable: the execution ends FAILED."""


def parse_commands(body: bytes, mime_type: str) -> Iterator[Parsed]:
    """Yield (line number, command, None) or (line number, None, error) per command line."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FileError("the file is not valid UTF-8") from None
    if mime_type == CSV:
        yield from _csv_commands(text)
    else:
        yield from _ndjson_commands(text)


def _ndjson_commands(text: str) -> Iterator[Parsed]:
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            yield number, None, "the line is not valid JSON"
            continue
        if isinstance(value, list):
            yield number, None, "an array is not allowed: one JSON object per line"
        elif not isinstance(value, dict):
            yield number, None, "the line is not a JSON object"
        else:
            yield number, value, None


def _csv_commands(text: str) -> Iterator[Parsed]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise FileError("the CSV file has no header row")
    unknown = sorted(set(header) - FIELDS)
    if unknown or len(set(header)) != len(header):
        raise FileError(f"the CSV header has unknown or repeated columns {unknown}")
    for cells in reader:
        number = reader.line_num
        if not any(cells):
            continue
        if len(cells) != len(header):
            yield number, None, f"the row has {len(cells)} cells, the header {len(header)}"
            continue
        try:
            yield number, _csv_command(dict(zip(header, cells, strict=True))), None
        except ValueError as exc:
            yield number, None, str(exc)


def _csv_command(cells: dict[str, str]) -> dict[str, Any]:
    """Return the command of one CSV row: empty cells are absent, numbers and lists decoded."""
    command: dict[str, Any] = {}
    for name, cell in cells.items():
        if cell == "":
            continue
        if name in _INTEGER_FIELDS:
            try:
                command[name] = int(cell)
            except ValueError:
                raise ValueError(f"{name} is not an integer") from None
        elif name in PLURAL:
            try:
                command[name] = json.loads(cell)
            except ValueError:
                raise ValueError(f"{name} is not a JSON array of strings") from None
        else:
            command[name] = cell
    return command


def check_command(command: dict[str, Any]) -> str | None:
    """Return why `command` breaks the USER_SEGMENT field rules, or None when it is valid."""
    unknown = sorted(set(command) - FIELDS)
    if unknown:
        return f"unknown fields {unknown}"
    if command.get("operation") not in ("UPDATE", "DELETE"):
        return "operation must be UPDATE or DELETE"
    if not _is_count(command.get("expiration_duration")):
        return "expiration_duration is required on every line and must be an integer >= 0"
    ts = command.get("expiration_ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float) or ts < 0):
        return "expiration_ts must be a number >= 0"
    identifiers = [f for f in IDENTIFIERS if f in command]
    if len(identifiers) != 1:
        return f"exactly one user identifier is allowed per line, found {len(identifiers)}"
    if not _is_text(command[identifiers[0]]):
        return f"{identifiers[0]} must be a non-empty string"
    if "compartment_id" in command and (
        identifiers != ["user_account_id"] or not _is_text(command["compartment_id"])
    ):
        return "compartment_id must be a non-empty string beside user_account_id"
    references = [f for f in (*SINGULAR, *PLURAL) if f in command]
    if len(references) != 1:
        return f"exactly one segment reference is allowed per line, found {len(references)}"
    value = command[references[0]]
    if references[0] in PLURAL:
        if not isinstance(value, list) or not value or not all(map(_is_text, value)):
            return f"{references[0]} must be a non-empty list of non-empty strings"
    elif not _is_text(value):
        return f"{references[0]} must be a non-empty string"
    return _check_data_bag(command.get("data_bag"))


def _check_data_bag(bag: Any) -> str | None:
    if bag is None:
        return None
    if not isinstance(bag, str):
        return "data_bag must be a string holding JSON"
    try:
        json.loads(bag)
    except ValueError:
        return "data_bag must be a string holding JSON"
    return None


def segment_keys(command: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the (singular field, value) of every segment a valid command names."""
    for plural, singular in PLURAL.items():
        if plural in command:
            return [(singular, v) for v in command[plural]]
    field = next(f for f in SINGULAR if f in command)
    return [(field, command[field])]


def member_key(command: dict[str, Any], default_compartment: str) -> tuple[str, ...]:
    """Return the member a valid command names: (field, value) or (uaid, value, compartment)."""
    field = next(f for f in IDENTIFIERS if f in command)
    if field == "user_account_id":
        return field, command[field], command.get("compartment_id", default_compartment)
    return field, command[field]


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Membership:
    """Members per datamart and segment, with the attributes of their last UPDATE.

    Not thread-safe: the emulator calls it under its lock.
    """

    def __init__(self) -> None:
        self._members: dict[str, dict[SegmentKey, dict[Member, dict[str, Any]]]] = {}

    def apply_file(
        self, datamart_id: str, body: bytes, mime_type: str, reject: Reject | None
    ) -> tuple[int, list[dict[str, Any]]]:
        """Apply every valid line; return (lines applied, [{"line", "error"}] of the others).

        Raises:
            FileError: the file as a whole is unreadable (nothing is applied).
        """
        parsed = list(parse_commands(body, mime_type))  # a FileError changes nothing
        errors: list[dict[str, Any]] = []
        success = 0
        for line, command, problem in parsed:
            if command is not None and problem is None:
                problem = check_command(command)
                if problem is None and reject is not None:
                    problem = reject(command)
            if command is None or problem is not None:
                errors.append({"line": line, "error": problem})
                continue
            self._apply(datamart_id, command)
            success += 1
        return success, errors

    def _apply(self, datamart_id: str, command: dict[str, Any]) -> None:
        segments = self._members.setdefault(datamart_id, {})
        member = member_key(command, DEFAULT_COMPARTMENT)
        for key in segment_keys(command):
            members = segments.setdefault(key, {})
            if command["operation"] == "DELETE":
                members.pop(member, None)
            else:
                members[member] = {
                    k: command.get(k) for k in ("expiration_duration", "expiration_ts", "data_bag")
                }

    def members(self, datamart_id: str) -> dict[SegmentKey, set[Member]]:
        segments = self._members.get(datamart_id, {})
        return {key: set(members) for key, members in segments.items() if members}

    def attributes(self, datamart_id: str) -> dict[SegmentKey, dict[Member, dict[str, Any]]]:
        segments = self._members.get(datamart_id, {})
        return {k: {m: dict(a) for m, a in v.items()} for k, v in segments.items() if v}
