"""The apply journal: operations and created resources, recorded beside the state.

One JSON object per line in the record `journal.jsonl` (in `.segops/`, or under the S3
state's prefix):

    {"op": "<id>", "address": "...", "status": "intent|sent|accepted|confirmed|failed", ...}
    {"resource": "<key>", "value": "<id>"}

Every `record`/`put` adds a line and rewrites the journal whole, returning once the store
has it, through the store's compare-and-swap records (`forget` compacts it to the latest
entry of each operation left, and the resources): so after a
kill the next apply, on this machine or on another one with an empty working directory,
knows which operations the platform accepted (and checks on them instead of sending them
again) and which platform objects exist; and a run that lost the state lock cannot
overwrite the journal of the run that took it. A torn last line (left by a segops that
appended) was never recorded and is ignored. Any other line that is not an entry is
damage, refused with how to recover. Entries never hold secrets or member identifiers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segops.errors import StateError
from segops.state import Records
from segops.state.records import FileRecords

JOURNAL = "journal.jsonl"
log = logging.getLogger("segops.journal")
STATUSES = ("intent", "sent", "accepted", "confirmed", "failed")
_HINT = (
    "The journal lists operations sent but not yet recorded in state.json. If no segops run "
    "is going on, move it aside (for a local state, e.g. `mv .segops/journal.jsonl "
    "journal.damaged`; on S3, copy the object elsewhere and delete it) and run `segops apply` "
    "again: it sends those changes again, which is harmless"
)


class ApplyJournal:
    """Implements the Journal and Resources protocols of segops.destinations."""

    def __init__(
        self, records: Records, name: str = JOURNAL, resources: Mapping[str, str] | None = None
    ) -> None:
        self.records, self.name = records, name
        self.where = records.location(name)
        self._ops: dict[str, dict[str, Any]] = {}
        self._resources: dict[str, str] = dict(resources or {})
        self._tag: str | None = None  # the version of the journal this run read or wrote
        self._lines: list[bytes] = []  # as stored, every entry in the order it was recorded
        # called with every entry once it is stored (apply --json reports operations)
        self.listeners: list[Callable[[Mapping[str, Any]], None]] = []
        self._load()

    def _load(self) -> None:
        try:
            got = self.records.get(self.name)
        except StateError as exc:
            raise StateError(f"cannot read the apply journal: {exc}. {_HINT}") from None
        if got is None:
            return
        data, self._tag = got
        complete = data.rfind(b"\n") + 1  # a torn last line never returned from `record`
        self._lines = data[:complete].splitlines()
        for number, line in enumerate(self._lines, start=1):
            self._take(_entry(line, f"{self.where}:{number}"))

    def _take(self, entry: Mapping[str, Any]) -> None:
        if "op" in entry:
            self._ops[entry["op"]] = dict(entry)
        else:
            self._resources[entry["resource"]] = entry["value"]

    def _append(self, entry: Mapping[str, Any]) -> None:
        self._store([*self._lines, _line(entry)])

    def _store(self, lines: list[bytes]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        self._tag = self.records.put(self.name, data, self._tag)
        self._lines = lines

    # Journal

    def get(self, op_id: str) -> Mapping[str, Any] | None:
        return self._ops.get(op_id)

    def record(self, op_id: str, address: str, status: str, **details: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown journal status {status!r}")
        entry = {
            **(self._ops.get(op_id) or {}),
            **details,
            "op": op_id,
            "address": address,
            "status": status,
        }
        self._append(entry)
        self._ops[op_id] = entry
        log.debug("%s: %s", op_id, status, extra={"event": "journal", "op": op_id})
        for listener in self.listeners:
            listener(entry)

    def operations(self, address: str | None = None) -> list[Mapping[str, Any]]:
        """Return the latest entry of every operation (of one address when given)."""
        return [e for e in self._ops.values() if address is None or e["address"] == address]

    # Resources

    def get_resource(self, key: str) -> str | None:
        return self._resources.get(key)

    def put_resource(self, key: str, value: str) -> None:
        if self._resources.get(key) == value:
            return
        self._append({"resource": key, "value": value})
        self._resources[key] = value

    @property
    def resources(self) -> dict[str, str]:
        return dict(self._resources)

    def forget(self, *addresses: str) -> None:
        """Drop the operations of `addresses` once their state is written (kept: resources).

        The journal is stored once for them all: a state write of many destinations (group
        commits) rewrites it once, not once per destination.
        """
        gone = set(addresses)
        self._ops = {k: v for k, v in self._ops.items() if v["address"] not in gone}
        kept = [{"resource": k, "value": v} for k, v in sorted(self._resources.items())]
        self._store([_line(e) for e in [*kept, *self._ops.values()]])


class FileJournal(ApplyJournal):
    """The apply journal as a file at `path` (its folder holds it as a record)."""

    def __init__(self, path: Path, resources: Mapping[str, str] | None = None) -> None:
        super().__init__(FileRecords(path.parent), path.name, resources)
        self.path = path


def _line(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()


def _entry(line: bytes, where: str) -> Mapping[str, Any]:
    """Return the journal entry on `line`, or raise StateError naming the line."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        entry = None
    if isinstance(entry, dict):
        if isinstance(entry.get("op"), str) and isinstance(entry.get("address"), str):
            if entry.get("status") in STATUSES:
                return entry
        if isinstance(entry.get("resource"), str) and isinstance(entry.get("value"), str):
            return entry
    raise StateError(f"{where}: not an apply journal entry: the journal is damaged. {_HINT}")


class JournalResources:
    """The Resources protocol over an ApplyJournal."""

    def __init__(self, journal: ApplyJournal) -> None:
        self._journal = journal

    def get(self, key: str) -> str | None:
        return self._journal.get_resource(key)

    def put(self, key: str, value: str) -> None:
        self._journal.put_resource(key, value)
