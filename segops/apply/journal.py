"""The apply journal: an append-only, fsynced log of operations and created resources.

One JSON object per line in `.segops/journal.jsonl`:

    {"op": "<id>", "address": "...", "status": "intent|sent|accepted|confirmed|failed", ...}
    {"resource": "<key>", "value": "<id>"}

A line is on disk before `record`/`put` returns, so after a kill the next apply knows which
operations the platform accepted (and checks on them instead of sending them again) and
which platform objects exist. A torn last line (a kill mid-write: no newline at the end) was
never recorded: it is cut off when the journal is opened, so the next line starts clean.
Any other line that is not an entry is damage, refused with how to recover. The file is
0600 in the private state folder. Entries never hold secrets or member identifiers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from segops._fs import PRIVATE_FILE, atomic_write, private_dir
from segops.errors import StateError

STATUSES = ("intent", "sent", "accepted", "confirmed", "failed")
_HINT = (
    "The journal lists operations sent but not yet recorded in state.json. If no segops run "
    "is going on, move it aside (e.g. `mv .segops/journal.jsonl journal.damaged`) and run "
    "`segops apply` again: it sends those changes again, which is harmless"
)


class FileJournal:
    """Implements the Journal and Resources protocols of segops.destinations."""

    def __init__(self, path: Path, resources: Mapping[str, str] | None = None) -> None:
        self.path = path
        self._ops: dict[str, dict[str, Any]] = {}
        self._resources: dict[str, str] = dict(resources or {})
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot read the apply journal: {exc.strerror}. {_HINT}"
            ) from None
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            self._cut_torn_tail(complete)
        for number, line in enumerate(data[:complete].splitlines(), start=1):
            self._take(_entry(line, f"{self.path}:{number}"))

    def _take(self, entry: Mapping[str, Any]) -> None:
        if "op" in entry:
            self._ops[entry["op"]] = dict(entry)
        else:
            self._resources[entry["resource"]] = entry["value"]

    def _cut_torn_tail(self, length: int) -> None:
        """Drop a last line without its newline: its record never returned."""
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.ftruncate(fd, length)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _append(self, entry: Mapping[str, Any]) -> None:
        private_dir(self.path.parent)
        data = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

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

    def forget(self, address: str) -> None:
        """Drop the operations of `address` once its state is written (kept: resources)."""
        self._ops = {k: v for k, v in self._ops.items() if v["address"] != address}
        self._rewrite()

    def _rewrite(self) -> None:
        lines = [
            json.dumps({"resource": k, "value": v}, sort_keys=True, separators=(",", ":"))
            for k, v in sorted(self._resources.items())
        ]
        lines += [json.dumps(e, sort_keys=True, separators=(",", ":")) for e in self._ops.values()]
        atomic_write(self.path, "".join(f"{line}\n" for line in lines).encode(), PRIVATE_FILE)


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
    """The Resources protocol over a FileJournal."""

    def __init__(self, journal: FileJournal) -> None:
        self._journal = journal

    def get(self, key: str) -> str | None:
        return self._journal.get_resource(key)

    def put(self, key: str, value: str) -> None:
        self._journal.put_resource(key, value)
