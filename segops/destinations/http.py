"""The httpx client factory and retry policy shared by the API destinations.

Retries are explicit and bounded: only transient failures (connect errors and timeouts,
429 and 5xx) are retried, with exponential backoff and full jitter, honouring
`Retry-After`, up to `max_attempts` and within a total `deadline` per call. Every other
status is returned to the caller, which turns a 4xx into the API's own error message.
Messages name the method and path only: never a header, a query string or a body.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from segops.errors import DestinationError, RetryableDestinationError
from segops.model import Connection

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5  # seconds; the n-th retry waits up to base_delay * 2**(n-1)
    max_delay: float = 30.0
    deadline: float = 600.0  # seconds one call may take across its retries
    timeout: float = 60.0  # seconds per attempt

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
) -> httpx.Client:
    """Return an httpx.Client with segops' timeouts; `transport` lets tests inject one."""
    timeout = httpx.Timeout(policy.timeout, connect=min(10.0, policy.timeout))
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers=dict(headers or {}),
        timeout=timeout,
        transport=transport,
        follow_redirects=False,
    )


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request, retrying transient failures; return the first non-transient response.

    Raises:
        RetryableDestinationError: attempts or the deadline ran out on transient failures.
    """
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        response: httpx.Response | None = None
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as exc:  # connect errors, timeouts, dropped connections
            problem = type(exc).__name__
        else:
            if response.status_code not in RETRYABLE_STATUS:
                return response
            problem = f"HTTP {response.status_code}"
        where = f"{method} {_path(client, url)}"
        if attempt >= policy.max_attempts:
            raise RetryableDestinationError(f"{where}: {problem}, {attempt} attempts made")
        delay = retry_after(response) if response is not None else None
        if delay is None:
            delay = jitter() * min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
        if clock() - start + delay > policy.deadline:
            raise RetryableDestinationError(
                f"{where}: {problem}; retrying would pass the {policy.deadline:g} s deadline"
            )
        sleep(delay)


def retry_after(response: httpx.Response) -> float | None:
    """Return the wait a `Retry-After` header asks for, in seconds, or None."""
    value = response.headers.get("Retry-After")
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


def api_error(response: httpx.Response, what: str) -> DestinationError:
    """Return a DestinationError carrying the API's own error text for a failed call."""
    detail = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        parts = [body.get(k) for k in ("title", "description", "error", "message")]
        detail = ": ".join(str(p) for p in parts if isinstance(p, str | int) and p != "")
    text = f"{what}: HTTP {response.status_code}"
    return DestinationError(f"{text}: {detail}" if detail else text)


def _path(client: httpx.Client, url: str) -> str:
    return httpx.URL(str(client.base_url).rstrip("/") + "/" + url.lstrip("/")).path
