"""A small threaded HTTP server on 127.0.0.1 with fault injection, shared by the emulators."""

from __future__ import annotations

import json
import random
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

_CHUNK = 1 << 16


@dataclass
class Faults:
    """Faults injected before a request reaches the emulated API, or into its answer.

    error_rate: fraction of requests answered 503 (seeded, so runs repeat).
    throttle_every: every Nth request is answered 429 with `Retry-After: retry_after`.
    latency: seconds slept before answering.

    Adversarial answers (a hostile or broken server), for requests whose "METHOD /path"
    matches the regex `match` (every request when empty):
    drip: seconds between the bytes of an answer's body, sent one at a time.
    pad: bytes of JSON whitespace inserted after the first byte of a body (still the same
        JSON document, only huge), streamed without being held in memory.
    chunked: send bodies with `Transfer-Encoding: chunked` instead of a Content-Length.
    mangle: rewrites the decoded JSON document of an answer (wrong types, missing fields).
    """

    error_rate: float = 0.0
    throttle_every: int = 0
    retry_after: int = 1
    latency: float = 0.0
    seed: int = 0
    drip: float = 0.0
    pad: int = 0
    chunked: bool = False
    mangle: Callable[[Any], Any] | None = None
    match: str = ""
    _count: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def hits(self, request: Request) -> bool:
        """Return whether the adversarial answer faults apply to `request`."""
        return re.search(self.match, f"{request.method} {request.path}") is not None

    def shape(self, response: Response) -> Response:
        """Return `response` with its JSON document mangled, when `mangle` is set."""
        if self.mangle is None or not response.body:
            return response
        try:
            document = json.loads(response.body)
        except ValueError:
            return response
        return Response(
            response.status, json.dumps(self.mangle(document)).encode(), response.headers
        )

    def body_chunks(self, body: bytes) -> Iterator[bytes]:
        """Yield the bytes of an answer's body as this server sends them."""
        if self.pad and body:
            yield body[:1]
            left = self.pad
            while left:
                yield b" " * min(left, _CHUNK)
                left -= min(left, _CHUNK)
            body = body[1:]
        if self.drip:
            for i in range(len(body)):
                time.sleep(self.drip)
                yield body[i : i + 1]
        else:
            yield body

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


def _answer(handler: BaseHTTPRequestHandler, response: Response, faults: Faults) -> None:
    """Write `response`, shaped by `faults` (drip, padding, chunked)."""
    handler.send_response(response.status)
    for name, value in response.headers.items():
        handler.send_header(name, value)
    if faults.chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    else:
        size = len(response.body) + (faults.pad if response.body else 0)
        handler.send_header("Content-Length", str(size))
    handler.end_headers()
    out: BinaryIO = handler.wfile  # type: ignore[assignment]
    for chunk in faults.body_chunks(response.body):
        if faults.chunked and chunk:
            out.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        else:
            out.write(chunk)
        out.flush()
    if faults.chunked:
        out.write(b"0\r\n\r\n")


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-request (a killed segops) is normal here, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """Serve `handler` on 127.0.0.1 (port 0: any free port) in a background thread."""

    def __init__(
        self,
        handler: Handler,
        faults: Faults | None = None,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self.lock = threading.RLock()
        self.requests: list[Request] = []  # every request served, for tests to inspect
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client went away mid-request: nothing arrived
                    self.close_connection = True
                    return
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
                faults = outer.faults
                if faults.hits(request) and not parts.path.startswith("/_emulator"):
                    _answer(self, faults.shape(response), faults)
                else:
                    _answer(self, response, Faults())

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._server = _QuietServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # the handshake happens on accept
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
