"""The MoEngage File Segment API (v2) destination: publish member files, call, confirm.

Which operations a change takes is decided in `moengage_operations`; this module sends them.
For each step, in order:

1. Journal: a step this delta already confirmed (an earlier apply) is not sent again.
2. Quota: when the ledger says the operation does not fit now, sending stops; it and every
   later step are `pending` (ApplyResult.pending, with `eta`). A 429 means the same, and
   MoEngage's count is the authority: the 429 is not retried (unless its Retry-After asks
   for a short wait) and the ledger records the refusal, so this ETA and the next plan's
   come from MoEngage's answer (Retry-After, or the hourly window), not from the ledger.
3. Journal `intent`, publish the file, call (retries and Retry-After: `_http.send`), then:
   2xx -> `accepted` (ledger entry, `cs_id` kept as resource `moengage/{connection}/{name}`
   and sent on later calls); create 409 -> add-users only when this create was sent before
   (by this apply's retries or an earlier apply: the segment is segops' own), else replace
   with `on_existing: replace`, else the change fails naming `segops import` (adding would
   leave strangers in the segment); add-users or replace 404 -> create;
   remove-users 404 -> nothing to remove, confirmed; any other 4xx -> the change fails with
   MoEngage's title and description. Journal entries hold the publisher key, never the URL.

Confirmation rule:

- With `callback` configured, each call carries `callback_url = <receiver>?op=<op id>/<nonce>`
  (a fresh nonce per send, so a late result of an earlier send is not taken for this one);
  apply waits up to `callback.wait` seconds for the results: 201 -> confirmed; 400/500 -> failed
  (the rows are sent again by the next apply); the file is deleted either way. Operations
  still without a result stay `accepted` and the change reports not done (`ok=False`) with no
  confirmed rows (`confirmed=()`): apply then neither writes its state nor forgets its journal,
  so the next plan has the same delta, hence the same operation ids and journal entries. The
  next apply first waits (up to `callback.wait`) for those
  results if its receiver has the same URL (their callbacks can still reach it), then skips
  what is confirmed and sends the rest again: add-users and remove-users are idempotent, so a
  resend costs quota, never correctness. They count in `pending` until then.
- Without `callback`, a 2xx counts as done, *unconfirmed* (ApplyResult.unconfirmed; the state
  says so, and so do plan and `state show`): MoEngage offers no endpoint to poll a request.
  Files are then not deleted by apply (MoEngage may not have downloaded them yet): an S3 URL
  expires after `url_ttl` and the bucket's lifecycle rule removes the object; the HTTP
  publisher deletes everything when it is closed.

Messages and logs name operations and counts: never a URL, a credential or a member.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from segops import observe
from segops._text import plural
from segops.destinations import ApplyContext, ApplyResult, MemberRow, Sent, killpoints
from segops.destinations.http import RetryPolicy, ThrottledError, api_error, retry_after, send
from segops.destinations.moengage import requests as moe
from segops.destinations.moengage.answers import accepted
from segops.destinations.moengage.callbacks import (
    CallbackReceiver,
    callback_wait,
)
from segops.destinations.moengage.client import make_moengage_client
from segops.destinations.moengage.operations import Step, plan_steps, strategy_for
from segops.destinations.moengage.progress import Progress
from segops.destinations.moengage.publish import Publisher
from segops.destinations.moengage.quota import QuotaLedger, eta_text
from segops.errors import DestinationError
from segops.model import Connection, DestinationChange

# (request, status) -> the request to try instead. A create answered 409 (the name exists)
# is `_existing`'s to decide: it is never turned silently into add-users.
_FALLBACKS = {
    (moe.ADD_USERS, 404): moe.CREATE,  # it does not (never created, or gone): create it
    (moe.REPLACE, 404): moe.CREATE,
}
_URL = re.compile(r"https?://\S+")


_GONE = "gone"  # remove-users found no segment: nothing to remove
INTERRUPTED = "apply was interrupted (Ctrl-C): the next `segops apply` sends the rest"
log = logging.getLogger("segops.moengage")


class MoEngageDestination:
    """Send destination changes to one MoEngage workspace (see the module docstring)."""

    def __init__(
        self,
        connection: Connection,
        client: httpx.Client,
        context: ApplyContext,
        policy: RetryPolicy,
        publisher: Publisher,
        ledger: QuotaLedger,
        callbacks: CallbackReceiver | None,
        max_file_bytes: int = moe.MAX_FILE_BYTES,
    ) -> None:
        self._connection, self._client, self._context = connection, client, context
        self._policy, self._publisher, self._ledger = policy, publisher, ledger
        self._callbacks = callbacks
        self._wait = callback_wait(connection)
        self._max_file_bytes = max_file_bytes

    def apply(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]]
    ) -> ApplyResult:
        """Send `change`; return the confirmed row ranges, pending operations and what failed."""
        if change.delta is None:
            return ApplyResult(change.address, True, Sent(), message="nothing to send")
        strategy = strategy_for(change, self._connection.name)
        run = Progress()
        self._await_earlier(change, run)
        skipped: list[tuple[int, int]] = []
        users_per_file = self._ledger.limits.users_per_day
        steps = plan_steps(change, rows(), strategy, users_per_file, self._max_file_bytes, skipped)
        label = f"Sending {change.address}"
        with observe.step(label, change.operations or None, "file operations") as progress:
            try:
                for step in steps:
                    if self._context.stop():
                        run.error = INTERRUPTED
                        break
                    if not self._step(change.address, step, run):
                        if run.pending:
                            run.pending += [s.users for s in steps]
                        break
                    progress.advance(1, size=len(step.data))
            except DestinationError as exc:  # a member key no file can carry: keep what landed
                run.error = str(exc)
            run.confirmed += skipped
            if run.pending:
                clock = self._context.clock()
                when = eta_text(self._ledger.times(run.pending, clock), clock)
                left = plural(len(run.pending), "operation")
                progress.note(f"{left} left for the quota, next {when}")
                log.info("%s: %s left for the quota, next %s", change.address, left, when)
            if run.awaiting:
                progress.note(f"waiting up to {self._wait:g} s for MoEngage's results")
            outstanding = self._collect(change, run)
        now = self._context.clock()
        times = self._ledger.times(run.pending, now)
        callbacks = self._callbacks is not None
        return run.result(
            change.address, change.delta.rows, len(outstanding), eta_text(times, now), callbacks
        )

    def _step(self, address: str, step: Step, run: Progress) -> bool:
        """Send one step unless done before; return False when sending must stop."""
        journal = self._context.journal
        entry = journal.get(step.op_id) or {}
        status = entry.get("status")
        if status == "confirmed" or (status == "accepted" and self._callbacks is None):
            run.unconfirmed = run.unconfirmed or entry.get("unconfirmed") is True
            run.confirm(step.ranges)
            return True
        if entry.get("object"):
            self._delete(str(entry["object"]), run)  # an earlier run's file, now resent
        if not self._ledger.allows(step.users, self._context.clock()):
            run.pending.append(step.users)
            return False
        rows = [list(r) for r in step.ranges]
        # An earlier apply sent this very create: a 409 now may be its own segment.
        resent = entry.get("request") == moe.CREATE and status in ("sent", "accepted")
        journal.record(step.op_id, address, "intent", users=step.users, rows=rows)
        killpoints.reached("moe:intent")
        key = ""
        try:
            published = self._publisher.publish(step.file_name, step.data)
            key = published.key
            killpoints.reached("moe:published")
            request, body, callback = self._call(address, step, published.url, resent)
        except DestinationError as exc:
            if key:
                self._delete(key, run)
            if isinstance(exc, ThrottledError):  # MoEngage's quota is spent
                refusal = self._ledger.refuse(self._context.clock(), exc.retry_after)
                log.warning("%s: MoEngage refused %s: %s", address, step.request, refusal.note)
                run.pending.append(step.users)
                run.notes.append(refusal.note)
                return False
            journal.record(step.op_id, address, "failed", error=str(exc))
            run.error = str(exc)
            return False
        self._accepted(address, step, key, request, body, run)
        if self._callbacks is not None and request != _GONE:
            run.awaiting[callback] = (replace(step, data=b""), key)
        return True

    def _call(
        self, address: str, step: Step, url: str, resent: bool = False
    ) -> tuple[str, Mapping[str, Any], str]:
        """Send the step's request, falling back as _FALLBACKS (and `_existing`) say.

        `resent`: an earlier apply sent this create already. Returns the request that
        succeeded, its answer and the key its result is posted with.
        """
        cs_id = self._context.resources.get(self._resource(step.segment.name))
        segment = (
            step.segment if step.segment.cs_id or not cs_id else replace(step.segment, cs_id=cs_id)
        )
        request = moe.ADD_USERS if step.request == moe.CREATE and segment.cs_id else step.request
        # A fresh key per send: a late result of an earlier send is not taken for this one.
        key = f"{step.op_id}/{secrets.token_hex(4)}"
        callback = self._callbacks.url_for(key) if self._callbacks else None
        tried: set[str] = set()
        attempts = [0]  # of the request being sent: a create resent may have landed before

        def count(n: int) -> None:
            attempts[0] = n

        while True:
            tried.add(request)
            method, path = moe.ENDPOINTS[request]
            body = moe.request_body(request, segment, url, callback)
            self._context.journal.record(step.op_id, address, "sent", request=request, callback=key)
            response = send(
                self._client,
                method,
                path,
                policy=self._policy,
                sleep=self._context.sleep,
                clock=self._context.clock,
                json=body,
                quota_429=True,
                on_attempt=count,
            )
            what = f"{address}: {request}"
            if response.is_success:
                killpoints.reached("moe:answered")
                return request, accepted(response, what), key
            if response.status_code == 429:
                raise ThrottledError(f"{what}: HTTP 429", retry_after(response))
            if response.status_code == 404 and request == moe.REMOVE_USERS:
                return _GONE, {}, key
            if response.status_code == 409 and request == moe.CREATE:
                ours = resent or attempts[0] > 1
                request = self._existing(address, step.segment, ours, tried)
                continue
            fallback = _FALLBACKS.get((request, response.status_code))
            if fallback is None or fallback in tried:
                error = api_error(response, what)
                raise DestinationError(_URL.sub("<url>", str(error)))
            request = fallback

    def _existing(self, address: str, segment: moe.FileSegment, ours: bool, tried: set[str]) -> str:
        """Return what to send when creating `segment` found its name taken (HTTP 409).

        `ours`: this apply or an earlier one sent the same create, which may have landed:
        the segment is segops' own, and add-users fills it. Otherwise it belongs to
        someone else and segops does not know who is in it: `on_existing: replace` replaces
        its users with the desired ones; by default the change fails, naming `segops import`.
        """
        if ours and moe.ADD_USERS not in tried:
            return moe.ADD_USERS
        if segment.on_existing == "replace" and moe.REPLACE not in tried:
            return moe.REPLACE
        raise DestinationError(
            f"{address}: MoEngage segment {segment.name!r} already exists (create answered "
            "HTTP 409), and the state does not know who is in it; adding the desired members "
            "would leave everyone else in it. Adopt it: `segops import "
            f"{address} --members FILE` (its current members) or `segops import {address} "
            "--assume-empty`, then apply again; or set `on_existing: replace` on the "
            "destination to replace its users with the desired members"
        )

    def _accepted(
        self,
        address: str,
        step: Step,
        key: str,
        request: str,
        body: Mapping[str, Any],
        run: Progress,
    ) -> None:
        journal, now = self._context.journal, self._context.clock()
        if request == _GONE:
            journal.record(step.op_id, address, "confirmed", note="segment not found")
            run.notes.append("a segment to remove members from does not exist")
            run.confirm(step.ranges)
            self._delete(key, run)
            return
        self._ledger.record(request, step.users, now)
        log.info(
            "%s: %s of %s accepted",
            address,
            request,
            plural(step.users, "user"),
            extra={"event": "operation", "address": address, "request": request},
        )
        cs_id = body.get("cs_id")
        if isinstance(cs_id, str) and cs_id:
            self._context.resources.put(self._resource(step.segment.name), cs_id)
        journal.record(
            step.op_id, address, "accepted", request=request, object=key, accepted_at=now
        )
        killpoints.reached("moe:accepted")
        run.count_sent(step)
        if self._callbacks is None:  # MoEngage offers nothing to ask: accepted, unconfirmed
            journal.record(step.op_id, address, "confirmed", unconfirmed=True)
            run.unconfirmed = True
            run.confirm(step.ranges)

    def _await_earlier(self, change: DestinationChange, run: Progress) -> None:
        """Wait for the results of operations an earlier apply of this delta left accepted."""
        journal, summary = self._context.journal, _summary_id(change)
        entry = journal.get(summary)
        if self._callbacks is None or not entry or entry.get("status") != "accepted":
            return
        if entry.get("receiver") == self._callbacks.fingerprint and self._wait > 0:
            ops = [journal.get(op) or {} for op in entry.get("ops", [])]
            keys = {str(e["callback"]): e for e in ops if _awaits(e)}
            results = self._callbacks.wait_for(
                keys, self._wait, self._context.sleep, self._context.clock, self._context.stop
            )
            for key, payload in results.items():
                op = keys[key]
                self._settle(change.address, op["op"], str(op.get("object") or ""), payload, run)
        journal.record(summary, change.address, "confirmed")  # what did not report is resent

    def _collect(self, change: DestinationChange, run: Progress) -> list[str]:
        """Wait for this run's results; return the operations still without one."""
        if self._callbacks is None or not run.awaiting:
            return []
        results = self._callbacks.wait_for(
            run.awaiting, self._wait, self._context.sleep, self._context.clock, self._context.stop
        )
        for callback, (step, key) in run.awaiting.items():
            if callback in results:
                error = self._settle(change.address, step.op_id, key, results[callback], run)
                if error is None:
                    run.confirm(step.ranges)
                else:
                    run.failures.append(error)
        outstanding = [s.op_id for k, (s, _) in run.awaiting.items() if k not in results]
        if outstanding:
            self._context.journal.record(
                _summary_id(change),
                change.address,
                "accepted",
                ops=outstanding,
                receiver=self._callbacks.fingerprint,
            )
        return outstanding

    def _settle(
        self, address: str, op: str, key: str, payload: Mapping[str, Any], run: Progress
    ) -> str | None:
        """Record a callback result and delete its file; return the error, None on success."""
        journal = self._context.journal
        if key:
            self._delete(key, run)
        if payload.get("status") == 201:
            counts = {k: payload.get(k) for k in ("values_found", "values_processed", "user_count")}
            journal.record(op, address, "confirmed", **counts)
            killpoints.reached("moe:confirmed")
            run.found += payload.get("user_count") or 0  # a count: checked on receipt
            return None
        error = _URL.sub("<url>", str(payload.get("error_message") or ""))
        error = error or f"processing failed with status {payload.get('status')}"
        journal.record(op, address, "failed", error=error)
        return error

    def _delete(self, key: str, run: Progress) -> None:
        try:
            self._publisher.delete(key)
        except DestinationError as exc:
            run.notes.append(str(exc))

    def _resource(self, segment_name: str) -> str:
        return f"moengage/{self._connection.name}/{segment_name}"


def _summary_id(change: DestinationChange) -> str:
    assert change.delta is not None
    return f"moe:{change.address}:{change.delta.sha256[:16]}:awaiting"


def _awaits(entry: Mapping[str, Any]) -> bool:
    """Return whether a journal entry is an operation accepted and awaiting its result."""
    return entry.get("status") == "accepted" and bool(entry.get("callback"))


__all__ = [
    "MoEngageDestination",
    "make_moengage_client",
]
