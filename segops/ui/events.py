"""`segops apply --json`: one JSON event per line on stdout, like `terraform apply -json`.

Every event is an object with `format_version`, `type` and `time` (UTC, RFC 3339), valid
against schemas/apply-events.schema.json. In order:

    plan            the changes apply is about to send (counts, never identifiers)
    data_changed    a segment of a saved plan whose data moved since review (one per address)
    operation       each operation a destination records: intent, sent, accepted, confirmed,
                    failed (mediarithmics executions, MoEngage file operations)
    pending         operations left for a later apply by a platform quota, with their ETA
    destination     how each destination ended: done, partial, pending or failed
    interrupt       Ctrl-C was received (hard: the second one)
    result          the last line, always: status, exit code, counts, a message for people

Errors are a `result` with status "error" (or "refused" for a safety guard); the same
message also goes to stderr. Nothing else is written to stdout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from segops.destinations import ApplyResult
    from segops.model import Plan

FORMAT_VERSION: Final = "1"
# Journal details an operation event carries: ids, counts and statuses, never a member, a
# URL or a file name (those stay in the journal, which is not for people).
_DETAILS: Final = (
    "request",
    "users",
    "rows",
    "datamart_id",
    "import_id",
    "execution_id",
    "execution_status",
    "total_success",
    "total_failure",
    "values_found",
    "values_processed",
    "user_count",
    "reason",
    "error",
    "note",
)


class EventStream:
    """Writes events as JSON lines; safe to call from the threads that poll executions."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write or _stdout
        self._lock = threading.Lock()
        self.ended = False

    def emit(self, kind: str, **fields: Any) -> None:
        stamp = time.time()
        event = {
            "format_version": FORMAT_VERSION,
            "type": kind,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp))
            + f".{int(stamp * 1000) % 1000:03d}Z",
            **fields,
        }
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            if not self.ended:
                self._write(line)
            self.ended = self.ended or kind == "result"

    def plan(self, plan: Plan) -> None:
        from segops.render.json import plan_to_dict

        data = plan_to_dict(plan)
        changes = [
            {
                "address": c["address"],
                "segment": c["segment"],
                "connection": c["connection"],
                "platform": c["platform"],
                "action": c["action"],
                "members": {k: c["members"][k] for k in _COUNTS},
                "operations": c["operations"],
                "eta": c["eta"],
            }
            for c in data["changes"]
            if c["action"] != "no-op"
        ]
        self.emit("plan", state=data["state"], summary=data["summary"], changes=changes)

    def data_changed(self, line: str) -> None:
        address, _, message = line.partition(": ")
        self.emit("data_changed", address=address, message=message)

    def operation(self, entry: Mapping[str, Any]) -> None:
        details = {k: entry[k] for k in _DETAILS if k in entry and _plain(entry[k])}
        self.emit(
            "operation",
            address=entry["address"],
            operation=entry["op"],
            status=entry["status"],
            details=details,
        )

    def destination(self, result: ApplyResult) -> None:
        sent = {"add": result.sent.add, "update": result.sent.update, "remove": result.sent.remove}
        if result.pending:
            self.emit("pending", address=result.address, operations=result.pending, eta=result.eta)
        if result.ok:
            status = "pending" if result.pending else "done"
        else:
            status = "partial" if result.confirmed else "failed"
        self.emit(
            "destination",
            address=result.address,
            status=status,
            sent=sent,
            files=list(result.files),
            message=result.message,
        )

    def interrupt(self, hard: bool, message: str) -> None:
        self.emit("interrupt", hard=hard, message=message)

    def result(
        self,
        status: str,
        exit_code: int,
        message: str,
        results: Sequence[ApplyResult] = (),
        not_started: int = 0,
    ) -> None:
        applied = sum(r.ok for r in results)
        self.emit(
            "result",
            status=status,
            exit_code=exit_code,
            destinations={
                "applied": applied,
                "failed": len(results) - applied,
                "not_started": not_started,
            },
            message=message,
        )


_COUNTS: Final = ("add", "update", "remove", "before", "after")


def _plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, int) for v in value)
    return isinstance(value, str | int | float | bool) or value is None


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
