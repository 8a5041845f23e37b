"""Receive MoEngage's processing results (CallbackV2) while an apply runs.

Each operation is sent with `callback_url = <receiver url>?op=<operation id>`; MoEngage POSTs
the result there once the file is processed (reference §5) and wants HTTP 200 back. The
receiver answers 200 to every well-formed CallbackV2 (checked field by field: see
`answers.callback_problem`), 400 to anything else, and keeps the latest payload per
operation id. A request body is read only when its length is declared and at most 1 MiB,
and a client that stops sending is dropped after `_READ_TIMEOUT` seconds. Operation
ids hold a digest of the member delta, so they are not guessable from outside. Request lines
are not logged: a payload names a segment, never a member.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from segops.destinations.moengage.answers import callback_problem
from segops.errors import DestinationError
from segops.model import Connection

CALLBACK_PATH = "/moengage/callback"
DEFAULT_WAIT = 600.0  # seconds apply waits for the results of the operations it sent
_MAX_BODY = 1 << 20
_POLL = 0.05  # seconds between checks while waiting
_READ_TIMEOUT = 10.0  # seconds a callback request may take to arrive


class CallbackReceiver:
    """A threaded HTTP server on `listen` ("host:port", port 0: any free port) for callbacks."""

    def __init__(self, listen: str = "127.0.0.1:0", public_url: str | None = None) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise DestinationError(f"callback.listen {listen!r} is not host:port")
        self._results: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = _QuietServer((host, int(port)), _handler(self._receive))
        self._server.daemon_threads = True
        bound_host, bound_port = self._server.server_address[:2]
        base = (public_url or f"http://{bound_host!s}:{bound_port}").rstrip("/")
        self.url = base + CALLBACK_PATH
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def fingerprint(self) -> str:
        """Return a digest of `url`: a later apply knows whether old callbacks can reach it."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def url_for(self, op_id: str) -> str:
        return f"{self.url}?op={quote(op_id, safe='')}"

    def result(self, op_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._results.get(op_id)

    def wait_for(
        self,
        op_ids: Iterable[str],
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        stop: Callable[[], bool] = lambda: False,
    ) -> dict[str, dict[str, Any]]:
        """Return the results of `op_ids` that arrive within `timeout` seconds (maybe not all),
        or by the time `stop()` says to stop waiting."""
        wanted = set(op_ids)
        deadline = clock() + timeout
        while True:
            with self._lock:
                found = {i: self._results[i] for i in wanted if i in self._results}
            remaining = deadline - clock()
            if len(found) == len(wanted) or remaining <= 0 or stop():
                return found
            sleep(min(_POLL, remaining))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CallbackReceiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _receive(self, path: str, body: bytes) -> int:
        parts = urlsplit(path)
        ops = parse_qs(parts.query).get("op", [])
        if parts.path != CALLBACK_PATH or len(ops) != 1:
            return 404
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return 400
        if callback_problem(payload):
            return 400
        with self._lock:
            self._results[ops[0]] = payload
        return 200


class _QuietServer(ThreadingHTTPServer):
    """A client that stalls or hangs up is its own problem: no traceback on segops' stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None


def _handler(receive: Callable[[str, bytes], int]) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = _READ_TIMEOUT  # socket timeout: a stalled client does not hold a thread

        def do_POST(self) -> None:
            declared = self.headers.get("Content-Length") or ""
            if not declared.isdigit():  # absent, negative or chunked: not a CallbackV2 POST
                self.close_connection = True
                self._answer(411)
                return
            length = int(declared)
            if length > _MAX_BODY:
                self.close_connection = True
                self._answer(413)
                return
            self._answer(receive(self.path, self.rfile.read(length)))

        def do_GET(self) -> None:
            self._answer(405)

        def _answer(self, status: int) -> None:
            body = b"{}" if status == 200 else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return _Handler


def callback_receiver_for(connection: Connection) -> CallbackReceiver | None:
    """Return a receiver when the connection configures `callback` (any callback.* key)."""
    if not any(key == "callback" or key.startswith("callback.") for key, _ in connection.options):
        return None
    url = connection.option("callback.url")
    return CallbackReceiver(
        str(connection.option("callback.listen", "127.0.0.1:0")), str(url) if url else None
    )


def callback_wait(connection: Connection) -> float:
    """Return the seconds apply waits for results (option callback.wait, default 600)."""
    return float(connection.option("callback.wait", DEFAULT_WAIT) or 0)


__all__ = [
    "CALLBACK_PATH",
    "DEFAULT_WAIT",
    "CallbackReceiver",
    "callback_receiver_for",
    "callback_wait",
]
