"""The httpx client factory and retry policy shared by the API destinations.

Retries are explicit and bounded: only transient failures (connect errors and timeouts,
429 and 5xx) are retried, with exponential backoff and full jitter, honouring
`Retry-After`, up to `max_attempts` and within a total `deadline` per call. Every attempt
is bounded in time (`timeout`: connecting, sending and reading the whole answer) and every
answer in size (`max_response_bytes`); see `transport`. Every other status is returned to
the caller, which turns a 4xx into the API's own error message.
Messages name the method and path only: never a header, a query string or a body.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx

from segops.destinations.transport import (
    DEADLINE,
    AnswerTooLarge,
    AnswerTooSlow,
    bound_sockets,
    check_url,
    describe,
    read_bounded,
)
from segops.errors import DestinationError, RetryableDestinationError
from segops.model import Connection

log = logging.getLogger("segops.http")
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MIB: Final = 1 << 20
# An error answer is read for its message only: more than this is left unread.
ERROR_BODY_BYTES: Final = 64 << 10
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class ThrottledError(RetryableDestinationError):
    """Retries ran out on 429 answers; `retry_after` is the last wait the API asked for."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OutOfTime(RetryableDestinationError):
    """The time the caller allowed (`until`) ran out before an answer came."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5  # seconds; the n-th retry waits up to base_delay * 2**(n-1)
    max_delay: float = 30.0
    deadline: float = 600.0  # seconds one call may take across its retries
    timeout: float = 60.0  # seconds per attempt: connect, send and the whole answer
    max_response_bytes: int = 16 * MIB  # a JSON answer larger than this is refused

    @classmethod
    def from_connection(cls, connection: Connection) -> RetryPolicy:
        default = cls()
        return cls(
            max_attempts=int(connection.option("max_attempts", default.max_attempts) or 1),
            deadline=float(connection.option("deadline", default.deadline) or default.deadline),
            timeout=float(connection.option("timeout", default.timeout) or default.timeout),
        )


def make_client(
    base_url: str,
    policy: RetryPolicy,
    *,
    auth: httpx.Auth | tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    allow_insecure_http: bool = False,
) -> httpx.Client:
    """Return an httpx.Client with segops' bounds; `transport` lets tests inject one.

    Raises:
        DestinationError: `base_url` is malformed, holds credentials, or is http:// to
            another machine without `allow_insecure_http`.
    """
    check_url(base_url, "base_url", allow_insecure_http=allow_insecure_http)
    timeout = httpx.Timeout(policy.timeout, connect=min(10.0, policy.timeout))
    client = httpx.Client(
        base_url=base_url,
        auth=auth,
        headers={"Accept-Encoding": "identity", **dict(headers or {})},
        timeout=timeout,
        transport=transport,
        follow_redirects=False,
    )
    bound_sockets(client)
    return client


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
    until: float | None = None,
    quota_429: bool = False,
    on_attempt: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request, retrying transient failures; return the first non-transient answer.

    The answer comes back whole (read within the attempt's time, capped in size). `until`
    (on `clock`) cuts the call's deadline short, e.g. to a poll timeout. With `quota_429`
    a 429 means a spent quota: it is retried only when its Retry-After asks for at most
    `max_delay`, and returned otherwise. `on_attempt(n)` is called before the n-th attempt
    (a request resent may have landed the first time).

    Raises:
        OutOfTime: `until` came before an answer.
        ThrottledError: attempts or the deadline ran out on 429 answers.
        RetryableDestinationError: attempts or the deadline ran out on transient failures.
        DestinationError: the answer is larger than `max_response_bytes`, or TLS refused
            the server's certificate.
    """
    start = clock()
    end = start + policy.deadline if until is None else min(start + policy.deadline, until)
    path = _path(client, url)
    where = f"{method} {path}"
    attempt = 0
    while True:
        attempt += 1
        if on_attempt is not None:
            on_attempt(attempt)
        response: httpx.Response | None = None
        budget = min(policy.timeout, end - clock())
        began = time.monotonic()
        try:
            response = _attempt(client, method, url, budget, policy.max_response_bytes, kwargs)
        except httpx.RequestError as exc:  # transport errors, undecodable answers
            problem, transient = describe(exc)
            _log_call(method, path, None, attempt, began, problem)
            if not transient:
                raise DestinationError(f"{where}: {problem}") from None
        except AnswerTooSlow:
            problem = f"the answer did not arrive whole within {max(budget, 0):.3g} s"
            _log_call(method, path, None, attempt, began, problem)
        else:
            _log_call(method, path, response.status_code, attempt, began)
            if response.status_code not in RETRYABLE_STATUS:
                return response
            if quota_429 and response.status_code == 429 and not _short_wait(response, policy):
                return response
            problem = f"HTTP {response.status_code}"
        delay = retry_after(response) if response is not None else None
        if attempt >= policy.max_attempts:
            log.warning("%s: %s, giving up after %d attempts", where, problem, attempt)
            _give_up(f"{where}: {problem}, {attempt} attempts made", response, delay)
        if delay is None:
            delay = jitter() * min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
        if clock() + delay > end:
            log.warning("%s: %s, no time left to retry", where, problem)
            if until is not None and until < start + policy.deadline:
                raise OutOfTime(f"{where}: {problem}; the time allowed ran out")
            limit = f"{policy.deadline:g} s deadline"
            _give_up(f"{where}: {problem}; retrying would pass the {limit}", response, delay)
        log.info(
            "retrying %s in %.2f s: %s (attempt %d of %d)",
            where,
            delay,
            problem,
            attempt + 1,
            policy.max_attempts,
            extra={"event": "retry", "method": method, "path": path, "delay": round(delay, 3)},
        )
        sleep(delay)


def _log_call(
    method: str, path: str, status: int | None, attempt: int, began: float, problem: str = ""
) -> None:
    """Log one HTTP attempt: method, path (never the query), status, attempt, duration."""
    duration = time.monotonic() - began
    outcome = str(status) if status is not None else problem
    log.debug(
        "%s %s -> %s in %.3f s (attempt %d)",
        method,
        path,
        outcome,
        duration,
        attempt,
        extra={
            "event": "http",
            "method": method,
            "path": path,
            "status": status,
            "attempt": attempt,
            "duration": round(duration, 4),
        },
    )


def _attempt(
    client: httpx.Client, method: str, url: str, budget: float, cap: int, kwargs: Any
) -> httpx.Response:
    """Send once and read the whole answer within `budget` seconds; return it buffered."""
    if budget <= 0:
        raise AnswerTooSlow()
    deadline = time.monotonic() + budget
    token = DEADLINE.set(deadline)
    try:
        request = client.build_request(method, url, **kwargs)
        streamed = client.send(request, stream=True)
        try:
            success = streamed.is_success
            try:
                body = read_bounded(streamed, deadline, cap if success else ERROR_BODY_BYTES)
            except AnswerTooLarge:
                if success:
                    raise DestinationError(
                        f"{method} {request.url.path}: the answer is larger than {cap:,} bytes"
                    ) from None
                body = b""  # an error status is reported without its text
        finally:
            streamed.close()
    finally:
        DEADLINE.reset(token)
    headers = [(k, v) for k, v in streamed.headers.multi_items() if k not in _DROPPED_HEADERS]
    return httpx.Response(streamed.status_code, headers=headers, content=body, request=request)


def _short_wait(response: httpx.Response, policy: RetryPolicy) -> bool:
    delay = retry_after(response)
    return delay is not None and delay <= policy.max_delay


def _give_up(message: str, response: httpx.Response | None, delay: float | None) -> None:
    if response is not None and response.status_code == 429:
        raise ThrottledError(message, delay)
    raise RetryableDestinationError(message)


def retry_after(response: httpx.Response | None) -> float | None:
    """Return the wait a `Retry-After` header asks for, in seconds, or None."""
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def read_json(response: httpx.Response, what: str) -> Any:
    """Return the strict JSON of an answer (no NaN or Infinity).

    Raises:
        DestinationError: the answer is not JSON, naming `what`.
    """

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        return json.loads(response.content, parse_constant=refuse)
    except (ValueError, RecursionError):
        raise DestinationError(f"{what}: the answer is not valid JSON") from None


def api_error(response: httpx.Response, what: str) -> DestinationError:
    """Return a DestinationError carrying the API's own error text for a failed call."""
    detail = ""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        parts = [body.get(k) for k in ("title", "description", "error", "message")]
        detail = ": ".join(str(p)[:500] for p in parts if isinstance(p, str | int) and p != "")
    text = f"{what}: HTTP {response.status_code}"
    return DestinationError(f"{text}: {detail}" if detail else text)


def _path(client: httpx.Client, url: str) -> str:
    return httpx.URL(str(client.base_url).rstrip("/") + "/" + url.lstrip("/")).path
