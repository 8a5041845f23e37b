"""Watching mediarithmics executions until they end, and reporting what each batch became.

Statuses (reference §6): SUCCEEDED / SUCCESS are success, FAILED / CANCELED / LOST /
EXECUTOR_NOT_RESPONDING are terminal failures, anything else is still running. A SUCCEEDED
execution with `result.total_failure > 0` rejected some lines: the batch is a partial failure
and is not confirmed. The platform's own error text is not repeated in messages or the
journal: it may quote a command line, and command lines hold member identifiers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

from segops.destinations import ApplyContext, ApplyResult, Sent, killpoints
from segops.destinations.http import OutOfTime
from segops.destinations.mediarithmics.api import (
    SUCCEEDED,
    Execution,
    ImportNotFoundError,
    MediarithmicsApi,
)
from segops.destinations.mediarithmics.batches import Batch
from segops.errors import DestinationError

log = logging.getLogger("segops.mediarithmics")
MAX_POLL_INTERVAL: Final = 30.0
_LISTED_PROBLEMS: Final = 10  # batches named one by one in a message; the rest are counted
_UNCONFIRMED: Final = "not confirmed: the next apply checks on it again or resends these rows"

Ref = tuple[str, str, str]  # (datamart id, document import id, execution id)


class _Journal(Protocol):
    def record(self, op_id: str, address: str, status: str, **details: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval: float = 1.0  # first wait between status reads; doubles up to MAX_POLL_INTERVAL
    timeout: float = 3600.0  # seconds one execution may take before the apply stops waiting


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one batch: confirmed | failed | unconfirmed | not sent (pending: polling).

    unconfirmed: accepted, but the apply stopped waiting (poll_timeout) or could not read its
    status; its journal entry stays "accepted".
    """

    start: int
    end: int
    sent: Sent  # rows of the batch per operation
    state: str
    uploaded: bool = False  # uploaded by this apply
    resumed: bool = False  # confirmed by an earlier apply
    detail: str = ""

    @classmethod
    def of(
        cls,
        batch: Batch,
        state: str,
        *,
        uploaded: bool = False,
        resumed: bool = False,
        detail: str = "",
    ) -> Outcome:
        return cls(batch.start, batch.end, batch.sent, state, uploaded, resumed, detail)


class Poller:
    """Poll executions with backoff and record how they ended in the journal."""

    def __init__(
        self,
        api: MediarithmicsApi,
        journal: _Journal,
        settings: PollSettings,
        context: ApplyContext,
    ) -> None:
        self._api, self._journal, self._settings = api, journal, settings
        self._sleep, self._clock, self._stop = context.sleep, context.clock, context.stop

    def watch(self, address: str, op_id: str, ref: Ref, pending: Outcome) -> Outcome:
        """Wait for the execution `ref` of one batch to end; return the batch's outcome."""
        where = f"execution {ref[2]}"
        try:
            execution, finished = self._wait(ref)
        except ImportNotFoundError as exc:  # gone: record it failed, the next apply resends
            self._journal.record(op_id, address, "failed", reason="execution not found")
            return replace(pending, state="failed", detail=f"{where}: {exc}")
        except DestinationError as exc:  # the journal keeps "accepted"
            detail = f"{where}: {exc}; {_UNCONFIRMED}"
            return replace(pending, state="unconfirmed", detail=detail)
        status = execution.status
        if not finished and self._stop():
            detail = f"{where} still {status} when apply was interrupted; {_UNCONFIRMED}"
            return replace(pending, state="unconfirmed", detail=detail)
        log.info(
            "%s: execution %s %s (%s lines succeeded, %s failed)",
            address,
            ref[2],
            status if finished else f"still {status}, no longer watched",
            execution.total_success,
            execution.total_failure,
            extra={"event": "execution", "address": address, "execution": ref[2]},
        )
        if not finished:
            detail = f"{where} still {status} after {self._settings.timeout:g} s; {_UNCONFIRMED}"
            return replace(pending, state="unconfirmed", detail=detail)
        success, failure = execution.total_success, execution.total_failure
        uri = _without_query(execution.error_file_uri)
        if status in SUCCEEDED and failure == 0:
            self._journal.record(op_id, address, "confirmed", total_success=success)
            killpoints.reached("mics:confirmed")
            return replace(pending, state="confirmed")
        self._journal.record(
            op_id,
            address,
            "failed",
            execution_status=status,
            total_success=success,
            total_failure=failure,
            error_file_uri=uri,
        )
        if status in SUCCEEDED:
            lines = pending.end - pending.start
            detail = f"{where} SUCCEEDED with {failure} of {lines} lines rejected"
            detail += f"; error file: {uri}" if uri else ""
        else:
            detail = f"{where} ended {status}"
        return replace(pending, state="failed", detail=detail)

    def _wait(self, ref: Ref) -> tuple[Execution, bool]:
        """Return the execution once terminal (True), or as last seen at the timeout (False).

        Every status read, and the listing behind it, stops at the timeout too.
        """
        deadline = self._clock() + self._settings.timeout
        interval = self._settings.interval
        execution: Execution | None = None
        polls = 0
        while True:
            try:
                execution = self._api.execution(*ref, until=deadline)
            except OutOfTime:  # the last read was cut short: what was seen before stands
                if execution is None:
                    raise
                return execution, False
            polls += 1
            log.debug(
                "execution %s: %s (poll %d)",
                ref[2],
                execution.status,
                polls,
                extra={"event": "poll", "execution": ref[2], "status": execution.status},
            )
            if execution.terminal:
                return execution, True
            left = deadline - self._clock()
            if left <= 0 or self._stop():
                return execution, False
            self._sleep(min(interval, left))
            if self._stop():  # Ctrl-C: the journal keeps it accepted, the next apply polls it
                return execution, False
            interval = min(interval * 2, MAX_POLL_INTERVAL)


def _without_query(uri: str | None) -> str | None:
    """Return `uri` without its query and fragment: they may hold a signature."""
    if uri is None:
        return None
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def build_result(address: str, outcomes: Iterable[Outcome], stopped: str) -> ApplyResult:
    """Return the destination's result: ok only when every batch is confirmed."""
    ordered = sorted(outcomes, key=lambda o: o.start)
    confirmed = [o for o in ordered if o.state == "confirmed"]
    ok = not stopped and len(confirmed) == len(ordered)
    uploaded = [o.sent for o in ordered if o.uploaded]
    sent = Sent(
        add=sum(s.add for s in uploaded),
        remove=sum(s.remove for s in uploaded),
        update=sum(s.update for s in uploaded),
    )
    return ApplyResult(
        address,
        ok,
        sent,
        message=_message(ordered, sent, stopped),
        confirmed=None if ok else _merged((o.start, o.end) for o in confirmed),
    )


def _merged(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return tuple(merged)


def _message(outcomes: list[Outcome], sent: Sent, stopped: str) -> str:
    if not outcomes:
        return f"nothing sent{': ' + stopped if stopped else ''}"
    states = ("confirmed", "failed", "unconfirmed")
    counts = {s: sum(o.state == s for o in outcomes) for s in states}
    resumed = sum(o.resumed for o in outcomes)
    parts = [f"{counts['confirmed']} of {len(outcomes)} executions confirmed"]
    parts[0] += f" ({resumed} by an earlier apply)" if resumed else ""
    parts += [f"{counts[s]} {s}" for s in states[1:] if counts[s]]
    not_sent = len(outcomes) - sum(counts.values())
    parts += [f"{not_sent} not sent"] if not_sent else []
    text = ", ".join(parts) + f"; sent +{sent.add} -{sent.remove} ~{sent.update}"
    problems = [o for o in outcomes if o.state in states[1:]]
    lines = [f"rows {o.start}-{o.end}: {o.detail}" for o in problems[:_LISTED_PROBLEMS]]
    if len(problems) > _LISTED_PROBLEMS:
        lines.append(f"... and {len(problems) - _LISTED_PROBLEMS} more")
    if stopped:
        lines.append(f"stopped: {stopped}")
    return "\n".join([text, *lines])
