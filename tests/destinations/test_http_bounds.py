"""Every HTTP call is bounded in time and size, against hostile servers on 127.0.0.1.

Time: a slow drip, an answer that never comes, an upload nobody reads: each call ends by its
deadline (plus slack for a busy machine). Size: huge answers, declared or not, compressed
or not, are refused after at most the cap, without being held in memory.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulators._server import EmulatorServer, Faults, Request, Response
from emulators.mediarithmics import MediarithmicsEmulator
from segops.destinations import MemberRow
from segops.destinations.http import MIB, OutOfTime, RetryPolicy, make_client, send
from segops.errors import DestinationError, RetryableDestinationError
from tests.emulators.fixtures_mediarithmics import (
    ADDRESS,
    TOKEN,
    change,
    close_clients,
    destination,
    indexed,
    keys,
    settings,
)

SLACK = 3.0  # seconds a busy 2-core machine may add to a bound
BODY = {"status": "ok", "data": {"id": "1", "note": "x" * 400}}


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    close_clients()


def serve(
    faults: Faults, status: int = 200, headers: dict[str, str] | None = None
) -> EmulatorServer:
    def handler(request: Request) -> Response:
        return Response.json(status, BODY, headers)

    return EmulatorServer(handler, faults).start()


Outcome = BaseException | httpx.Response


def timed_send(
    base_url: str, policy: RetryPolicy, method: str = "GET", **kwargs: object
) -> tuple[float, Outcome]:
    """Return (seconds taken, the answer or the exception) of one `send`."""
    start = time.monotonic()
    with make_client(base_url, policy) as client:
        try:
            outcome: Outcome = send(
                client,
                method,
                "/v1/things?secret=q",
                policy=policy,
                **kwargs,  # type: ignore[arg-type]
            )
        except DestinationError as exc:
            outcome = exc
    return time.monotonic() - start, outcome


SLOW = RetryPolicy(max_attempts=10, base_delay=0.05, max_delay=0.1, deadline=2.0, timeout=0.8)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(drip=0.05),  # 20 s of body, one byte at a time
        Faults(drip=0.05, chunked=True),
        Faults(latency=20),  # headers never come in time
        Faults(drip=0.05, match="^GET /v1/things$"),
    ],
    ids=["drip", "drip-chunked", "no-answer", "drip-one-path"],
)
def test_a_slow_answer_ends_by_the_deadline(faults: Faults) -> None:
    server = serve(faults)
    try:
        took, outcome = timed_send(server.base_url, SLOW)
    finally:
        server.stop()
    assert isinstance(outcome, RetryableDestinationError)
    assert took <= SLOW.deadline + SLACK
    text = str(outcome)
    assert text.startswith("GET /v1/things:") and "secret=q" not in text
    assert "in time" in text or "did not arrive whole" in text


def test_a_fast_answer_through_the_same_bounds_arrives_whole() -> None:
    server = serve(Faults(drip=0.001, chunked=True))
    try:
        _, outcome = timed_send(server.base_url, RetryPolicy(timeout=30, deadline=60))
    finally:
        server.stop()
    assert isinstance(outcome, httpx.Response) and outcome.json() == BODY


class RawServer:
    """A TCP server on 127.0.0.1 that does one hostile thing with each connection.

    "sink": accept and never read (an upload fills the buffers, then stalls);
    "sip": read the request 512 bytes at a time, every 50 ms, and never answer;
    "header-drip": read the request, then send a status line and one header byte every 50 ms.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.mode == "sip":
                while not self.stop.wait(0.05) and conn.recv(512):
                    pass
            elif self.mode == "header-drip":
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Pad: ")
                while not self.stop.wait(0.05):
                    conn.sendall(b"a")
        except OSError:
            return

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.stop.set()
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("mode,method", [("sink", "POST"), ("sip", "POST"), ("header-drip", "GET")])
def test_a_server_that_stalls_or_sips_ends_by_the_deadline(mode: str, method: str) -> None:
    server = RawServer(mode)
    content = b"x" * (48 * MIB) if method == "POST" else None
    try:
        took, outcome = timed_send(server.base_url, SLOW, method, content=content)
    finally:
        server.close()
    assert isinstance(outcome, RetryableDestinationError), outcome
    assert took <= SLOW.deadline + SLACK
    assert str(outcome).startswith(f"{method} /v1/things:")


def test_until_cuts_the_call_short_of_its_deadline() -> None:
    server = serve(Faults(drip=0.05))
    policy = RetryPolicy(deadline=600, timeout=60)
    try:
        took, outcome = timed_send(server.base_url, policy, until=time.monotonic() + 1.0)
    finally:
        server.stop()
    assert isinstance(outcome, OutOfTime)
    assert took <= 1.0 + SLACK


CAPPED = RetryPolicy(
    max_attempts=3, base_delay=0.01, deadline=30, timeout=20, max_response_bytes=MIB
)


@pytest.mark.parametrize(
    "faults", [Faults(pad=8 * MIB), Faults(pad=64 * MIB, chunked=True)], ids=["declared", "chunked"]
)
def test_an_answer_past_the_cap_is_refused_without_holding_it(faults: Faults) -> None:
    server = serve(faults)
    tracemalloc.start()
    try:
        _, outcome = timed_send(server.base_url, CAPPED)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        server.stop()
    assert isinstance(outcome, DestinationError) and not isinstance(
        outcome, RetryableDestinationError
    )
    assert str(outcome) == "GET /v1/things: the answer is larger than 1,048,576 bytes"
    assert len(server.requests) == 1, "a deterministic refusal is not retried"
    assert peak < 8 * MIB


def test_a_compressed_answer_is_capped_once_decompressed() -> None:
    bomb = gzip.compress(b"{" + b" " * (16 * MIB) + b"}")

    def handler(request: Request) -> Response:
        return Response(200, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"})

    server = EmulatorServer(handler).start()
    try:
        _, outcome = timed_send(server.base_url, CAPPED)
    finally:
        server.stop()
    assert isinstance(outcome, DestinationError)
    assert "larger than 1,048,576 bytes" in str(outcome)


@pytest.mark.parametrize("status", [400, 404, 409])
def test_a_huge_error_answer_is_reported_without_its_text(status: int) -> None:
    server = serve(Faults(pad=8 * MIB), status)
    try:
        _, outcome = timed_send(server.base_url, CAPPED)
    finally:
        server.stop()
    assert isinstance(outcome, httpx.Response)
    assert outcome.status_code == status and outcome.content == b""


@pytest.mark.parametrize("status", [500, 503])
def test_a_huge_transient_answer_is_retried_unread(status: int) -> None:
    server = serve(Faults(pad=64 * MIB), status)
    try:
        _, outcome = timed_send(server.base_url, CAPPED)
    finally:
        server.stop()
    assert isinstance(outcome, RetryableDestinationError)
    assert f"HTTP {status}, 3 attempts made" in str(outcome)


def test_a_dripping_status_read_leaves_apply_within_poll_timeout(tmp_path: Path) -> None:
    faults = Faults(drip=0.05, match=r"^GET .*/executions")
    with MediarithmicsEmulator(TOKEN, faults=faults, process_delay=0.005) as emulator:
        policy = RetryPolicy(max_attempts=5, base_delay=0.01, deadline=60, timeout=30)
        dest, journal, _ = destination(
            emulator, tmp_path, policy=policy, poll_timeout=1.5, poll_interval=0.01
        )
        start = time.monotonic()
        rows: list[MemberRow] = [MemberRow("add", k) for k in keys("k", 3)]
        result = dest.apply(change(None, settings()), indexed(rows))
        took = time.monotonic() - start
    assert took <= 1.5 + SLACK
    assert not result.ok and result.confirmed == ()
    assert "1 unconfirmed" in result.message
    assert [e["status"] for e in journal.operations(ADDRESS)] == ["accepted"]
