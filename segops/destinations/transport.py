"""Bounds and words for the HTTP transport: deadlines on every socket call, capped answers.

httpx's timeouts hold per socket call (a read, a write), so an answer dripped one byte a
second never times out. Here every socket call of a client made by `http.make_client` is
bounded by the wall-clock deadline of the call in progress (`DEADLINE`, set by `http.send`),
which covers connecting, the TLS handshake, sending the request and reading the whole
answer; answers are read in chunks and capped in size. Transport failures are described
for people (TLS verification, refused connection, DNS, timeout) with the host, never the
path's query, a header or credentials.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
import typing
from contextvars import ContextVar
from urllib.parse import urlsplit

import httpcore
import httpx

from segops.destinations import killpoints
from segops.errors import DestinationError

# Monotonic time by which the HTTP call in progress on this thread must be done.
DEADLINE: ContextVar[float | None] = ContextVar("segops_http_deadline", default=None)


class AnswerTooLarge(Exception):
    """The answer passed the size cap."""


class AnswerTooSlow(Exception):
    """The answer did not arrive whole before the deadline."""


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """Return `timeout` cut to what is left of the deadline; raise `error` when none is."""
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if len(buffer) > 1 and killpoints.armed("http:mid-request"):  # crash tests only
            half = len(buffer) // 2
            self._inner.write(buffer[:half], _bounded(timeout, httpcore.WriteTimeout))
            killpoints.reached("http:mid-request")
            buffer = buffer[half:]
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bound_sockets(client: httpx.Client) -> bool:
    """Make every socket call of `client`'s own transports honour `DEADLINE`.

    httpx has no public hook for its network backend: this reaches into the transports'
    connection pools (httpcore). Returns False when none could be reached (a test's
    transport, or an httpx whose internals moved); answers are still read in chunks and
    checked against the deadline between chunks then.
    """
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    bound = False
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend):
            if not isinstance(backend, _Backend):
                pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
            bound = True
    return bound


def read_bounded(response: httpx.Response, deadline: float, cap: int) -> bytes:
    """Return the whole body of a streamed `response`, by monotonic `deadline`, at most `cap` bytes.

    Raises:
        AnswerTooLarge: the body (decoded) is, or says it is, larger than `cap`.
        AnswerTooSlow: the body was still arriving at the deadline.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise AnswerTooLarge(declared)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            raise AnswerTooLarge(str(len(body)))
        if time.monotonic() > deadline:
            raise AnswerTooSlow()
    return bytes(body)


def describe(exc: httpx.RequestError) -> tuple[str, bool]:
    """Return what failed, for people, and whether trying again may help."""
    host = _host(exc)
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = str(cause.verify_message or cause.reason or "")
            if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
                return f"TLS: the certificate of {host} is not valid for that host name", False
            return f"TLS: the certificate of {host} could not be verified ({reason})", False
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {host} failed ({cause.reason or 'SSL error'})", True
        if isinstance(cause, socket.gaierror):
            return f"DNS: the name of {host} could not be resolved", True
        if isinstance(cause, ConnectionRefusedError):
            return f"connection to {host} refused", True
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connecting to {host} timed out", True
    if isinstance(exc, httpx.TimeoutException):
        return f"no complete answer from {host} in time ({type(exc).__name__})", True
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{host} closed the connection or broke the HTTP protocol", True
    if isinstance(exc, httpx.DecodingError):
        return f"the answer of {host} could not be decoded", False
    return f"{type(exc).__name__} talking to {host}", True


def _causes(exc: BaseException) -> typing.Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _host(exc: httpx.RequestError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without its request
        return "the server"
    return f"{url.host}:{url.port}" if url.port else str(url.host)


def check_url(value: str, key: str, *, allow_insecure_http: bool) -> None:
    """Refuse a malformed URL, credentials in it, or http:// to another machine.

    Messages name the key and at most the scheme and host: never userinfo, path or query.

    Raises:
        DestinationError: what is wrong and how to fix it.
    """
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port  # .port raises on a bad port
    except ValueError:
        raise DestinationError(f"{key} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise DestinationError(f"{key} must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise DestinationError(
            f"{key} holds credentials (user:password@): remove them; secrets come from "
            "the environment only"
        )
    if parts.scheme == "http" and not is_loopback(host) and not allow_insecure_http:
        where = f"{host}:{port}" if port else host
        raise DestinationError(
            f"{key} uses http:// to {where}: credentials and members would cross the network "
            "in clear; use https://, or set allow_insecure_http: true on the connection"
        )


def is_loopback(host: str) -> bool:
    """Return whether `host` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
