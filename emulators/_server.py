"""A small threaded HTTP server on 127.0.0.1 with fault injection, shared by the emulators."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Faults:
    """Faults injected before a request reaches the emulated API.

    error_rate: fraction of requests answered 503 (seeded, so runs repeat).
    throttle_every: every Nth request is answered 429 with `Retry-After: retry_after`.
    latency: seconds slept before answering.
    """

    error_rate: float = 0.0
    throttle_every: int = 0
    retry_after: int = 1
    latency: float = 0.0
    seed: int = 0
    _count: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def pick(self) -> tuple[int, dict[str, str]] | None:
        """Return (status, headers) of an injected failure, or None to serve normally."""
        self._count += 1
        if self.latency:
            time.sleep(self.latency)
        if self.throttle_every and self._count % self.throttle_every == 0:
            return 429, {"Retry-After": str(self.retry_after)}
        if self.error_rate and self._rng.random() < self.error_rate:
            return 503, {}
        return None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
        data = json.dumps(document).encode()
        return cls(status, data, {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[Request], Response]


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-request (a killed segops) is normal here, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """Serve `handler` on 127.0.0.1 (port 0: any free port) in a background thread."""

    def __init__(self, handler: Handler, faults: Faults | None = None, port: int = 0) -> None:
        self.faults = faults or Faults()
        self.lock = threading.RLock()
        self.requests: list[Request] = []  # every request served, for tests to inspect
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with outer.lock:
                    outer.requests.append(request)
                    injected = None if parts.path.startswith("/_emulator") else outer.faults.pick()
                if injected is not None:
                    status, headers = injected
                    response = Response.json(status, {"title": "Injected fault"}, headers)
                else:
                    response = handler(request)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = _QuietServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
