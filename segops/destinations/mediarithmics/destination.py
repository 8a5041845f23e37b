"""The mediarithmics destination: USER_SEGMENT bulk imports, one execution per batch.

For each batch of the member delta (mediarithmics_batches), in order:

    journal says confirmed      -> skip it: it landed in an earlier apply
    journal says accepted       -> poll its execution again, do not upload it again
    otherwise                   -> record intent, upload, record accepted, poll

Uploads run one at a time on the calling thread, so one batch body is held at a time; up to
`concurrency` executions are in flight (uploaded and not yet terminal), polled by worker
threads. A batch is confirmed only when its execution SUCCEEDED with no rejected line; only
confirmed batches enter `ApplyResult.confirmed`, so the next plan sends the rest again
(resending an UPDATE or DELETE is harmless). A failed batch does not stop the others; a
refused token does (every call would fail the same way).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Final

import httpx

from segops import observe
from segops.destinations import ApplyContext, ApplyResult, Journal, MemberRow, killpoints
from segops.destinations.http import RetryPolicy, make_client
from segops.destinations.mediarithmics import commands as mics
from segops.destinations.mediarithmics.api import AuthError, ImportNotFoundError, MediarithmicsApi
from segops.destinations.mediarithmics.batches import Batch, BatchLimits, iter_batches
from segops.destinations.mediarithmics.executions import (
    Outcome,
    Poller,
    PollSettings,
    build_result,
)
from segops.errors import DestinationError
from segops.model import Connection, DestinationChange

DEFAULT_BASE_URL: Final = "https://api.mediarithmics.com"
INTERRUPTED: Final = "apply was interrupted (Ctrl-C): the next `segops apply` sends the rest"
log = logging.getLogger("segops.mediarithmics")


def make_mediarithmics_client(
    connection: Connection,
    token: str,
    policy: RetryPolicy,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """Return a client for `connection` that sends the raw token as `Authorization`.

    An http:// base URL to another machine is refused unless the connection sets
    `allow_insecure_http: true` (the token would cross the network in clear).
    """
    base_url = str(connection.option("base_url") or DEFAULT_BASE_URL)
    headers = {"Authorization": token, "Accept": "application/json"}
    insecure = connection.option("allow_insecure_http") is True
    return make_client(
        base_url, policy, headers=headers, transport=transport, allow_insecure_http=insecure
    )


@dataclass(frozen=True, slots=True)
class MediarithmicsOptions:
    """The connection options the client reads (segops.yaml, `connections.<name>`)."""

    mime_type: str = mics.NDJSON
    limits: BatchLimits = BatchLimits()
    concurrency: int = 2
    poll: PollSettings = PollSettings()

    @classmethod
    def from_connection(cls, connection: Connection) -> MediarithmicsOptions:
        d, option = cls(), connection.option
        return cls(
            mime_type=str(option("mime_type") or d.mime_type),
            limits=BatchLimits(
                int(option("batch_lines") or d.limits.lines),
                int(option("batch_bytes") or d.limits.bytes),
            ),
            concurrency=max(1, int(option("concurrency") or d.concurrency)),
            poll=PollSettings(
                float(option("poll_interval") or d.poll.interval),
                float(option("poll_timeout") or d.poll.timeout),
            ),
        )


class _LockedJournal:
    """The journal, safe to call from the polling threads."""

    def __init__(self, journal: Journal) -> None:
        self._journal, self._lock = journal, threading.Lock()

    def get(self, op_id: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._journal.get(op_id)

    def record(self, op_id: str, address: str, status: str, **details: Any) -> None:
        with self._lock:
            self._journal.record(op_id, address, status, **details)


class MediarithmicsDestination:
    """Send a change as USER_SEGMENT executions and report which delta rows landed."""

    def __init__(
        self,
        connection: Connection,
        client: httpx.Client,
        context: ApplyContext,
        policy: RetryPolicy,
    ) -> None:
        self._connection = connection
        self._context = context
        self._options = MediarithmicsOptions.from_connection(connection)
        self._api = MediarithmicsApi(client, policy, context.sleep, context.clock)
        self._journal = _LockedJournal(context.journal)
        self._poller = Poller(self._api, self._journal, self._options.poll, context)
        self._import_errors: dict[str, DestinationError] = {}

    def apply(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]]
    ) -> ApplyResult:
        """Send every batch of `change` not yet confirmed; return what the platform confirmed."""
        label = f"Sending {change.address}"
        with observe.step(label, change.operations or None, "executions") as step:
            run = _Run(change, self._options.concurrency, step)
            try:
                for batch in iter_batches(
                    change, rows(), self._options.mime_type, self._options.limits
                ):
                    if self._context.stop():
                        run.stop(INTERRUPTED)
                        break
                    self._start(run, batch)
                    del batch  # drop the body before the next one is built
            except DestinationError as exc:
                run.stop(str(exc))
            finally:
                run.finish()
        return build_result(change.address, run.outcomes, run.stopped)

    def _start(self, run: _Run, batch: Batch) -> None:
        op_id = _op_id(run.change, batch)
        entry = self._journal.get(op_id) or {}
        if entry.get("status") == "confirmed":
            run.outcomes.append(Outcome.of(batch, "confirmed", resumed=True))
            run.step.advance()
            log.info("%s: rows %d-%d confirmed by an earlier apply", op_id, batch.start, batch.end)
            return
        if run.stopped:
            run.outcomes.append(Outcome.of(batch, "not sent"))
            return
        run.barrier(batch)
        run.slots.acquire()
        ref = _accepted(entry)
        try:
            uploaded = ref is None
            ref = ref or self._upload(run, op_id, batch)
        except DestinationError as exc:
            run.slots.release()
            # The API's text stays out of the journal: it could quote a command line.
            self._journal.record(op_id, run.change.address, "failed", reason="not uploaded")
            run.outcomes.append(Outcome.of(batch, "failed", detail=str(exc)))
            run.step.advance()
            if isinstance(exc, AuthError):
                run.stop("the API token was refused; the remaining batches were not sent")
            return
        pending = Outcome.of(batch, "pending", uploaded=uploaded)
        run.step.advance(0, size=len(batch.body) if uploaded else 0)
        run.step.note(f"execution {ref[2]} running")
        run.submit(self._poller.watch, run.change.address, op_id, ref, pending)

    def _upload(self, run: _Run, op_id: str, batch: Batch) -> tuple[str, str, str]:
        """Upload `batch`; return (datamart id, import id, execution id) once accepted."""
        datamart, address, mime = batch.datamart_id, run.change.address, self._options.mime_type
        self._journal.record(
            op_id, address, "intent", rows=[batch.start, batch.end], datamart_id=datamart
        )
        killpoints.reached("mics:intent")
        import_id = self._document_import(datamart)
        try:
            execution_id = self._api.upload(datamart, import_id, batch.body, mime)
        except ImportNotFoundError:
            import_id = self._document_import(datamart, replace=import_id)
            execution_id = self._api.upload(datamart, import_id, batch.body, mime)
        killpoints.reached("mics:uploaded")
        log.info(
            "%s: rows %d-%d uploaded (%d bytes) as execution %s",
            address,
            batch.start,
            batch.end,
            len(batch.body),
            execution_id,
            extra={"event": "upload", "address": address, "execution": execution_id},
        )
        self._journal.record(
            op_id,
            address,
            "accepted",
            datamart_id=datamart,
            import_id=import_id,
            execution_id=execution_id,
        )
        killpoints.reached("mics:accepted")
        return datamart, import_id, execution_id

    def _document_import(self, datamart: str, replace: str | None = None) -> str:
        """Return the remembered document import of `datamart`, creating it when needed."""
        if datamart in self._import_errors:
            raise self._import_errors[datamart]
        mime = self._options.mime_type
        key = f"mediarithmics/{self._connection.name}/{datamart}/{mime}"
        remembered = self._context.resources.get(key)
        if remembered is not None and remembered != replace:
            return remembered
        name = f"segops {self._connection.name} {self._context.run}"
        try:
            import_id = self._api.create_import(datamart, mime, name)
        except DestinationError as exc:
            self._import_errors[datamart] = exc
            raise
        self._context.resources.put(key, import_id)
        return import_id


def _op_id(change: DestinationChange, batch: Batch) -> str:
    digest = change.delta.sha256[:16] if change.delta else "nodelta"
    return f"mics:{change.address}:{digest}:{batch.start}-{batch.end}"


def _accepted(entry: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """Return (datamart, import, execution) of an operation the platform accepted before."""
    if entry.get("status") != "accepted":
        return None
    ids = (entry.get("datamart_id"), entry.get("import_id"), entry.get("execution_id"))
    if not all(isinstance(i, str) and i for i in ids):
        return None
    return str(ids[0]), str(ids[1]), str(ids[2])


class _Run:
    """One apply of one change: its outcomes, execution slots and polling threads."""

    def __init__(self, change: DestinationChange, concurrency: int, step: observe.Step) -> None:
        self.change = change
        self.step = step
        self.outcomes: list[Outcome] = []
        self.slots = threading.BoundedSemaphore(concurrency)
        self.stopped = ""  # why the remaining batches were not sent
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="segops-mics")
        self._futures: list[Future[Outcome]] = []
        self._target: mics.CommandTarget | None = None

    def submit(self, watch: Callable[..., Outcome], *args: Any) -> None:
        future = self._pool.submit(watch, *args)

        def done(_: Future[Outcome]) -> None:
            self.slots.release()
            self.step.advance()

        future.add_done_callback(done)
        self._futures.append(future)

    def barrier(self, batch: Batch) -> None:
        """Wait for every execution in flight when the batch's target differs from theirs.

        Removes (old settings) finish before adds (new settings) start, so a member that is
        both removed and added under the same segment ends up added.
        """
        if self._target is not None and batch.shape.target != self._target:
            self._collect()
        self._target = batch.shape.target

    def stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason

    def finish(self) -> None:
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):  # a second Ctrl-C: at once
            # Executions in flight stay "accepted" in the journal: the next apply polls them.
            self._pool.shutdown(wait=False, cancel_futures=True)
            return
        self._collect()
        self._pool.shutdown(wait=True)

    def _collect(self) -> None:
        wait(self._futures)
        self.outcomes.extend(f.result() for f in self._futures)
        self._futures = []
