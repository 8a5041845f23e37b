"""The apply journal: an append-only, fsynced log of operations and created resources.

One JSON object per line in `.segops/journal.jsonl`:

    {"op": "<id>", "address": "...", "status": "intent|sent|accepted|confirmed|failed", ...}
    {"resource": "<key>", "value": "<id>"}

A line is on disk before `record`/`put` returns, so after a kill the next apply knows which
operations the platform accepted (and checks on them instead of sending them again) and
which platform objects exist. A torn last line (a kill mid-write) is ignored. Entries never
hold secrets or member identifiers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATUSES = ("intent", "sent", "accepted", "confirmed", "failed")


class FileJournal:
    """Implements the Journal and Resources protocols of segops.destinations."""

    def __init__(self, path: Path, resources: Mapping[str, str] | None = None) -> None:
        self.path = path
        self._ops: dict[str, dict[str, Any]] = {}
        self._resources: dict[str, str] = dict(resources or {})
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line from a kill mid-write
            if "op" in entry:
                self._ops[entry["op"]] = entry
            elif "resource" in entry:
                self._resources[entry["resource"]] = entry["value"]

    def _append(self, entry: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
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
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)


class JournalResources:
    """The Resources protocol over a FileJournal."""

    def __init__(self, journal: FileJournal) -> None:
        self._journal = journal

    def get(self, key: str) -> str | None:
        return self._journal.get_resource(key)

    def put(self, key: str, value: str) -> None:
        self._journal.put_resource(key, value)
