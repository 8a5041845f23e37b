"""The shared HTTP layer: bounded retries with full jitter, Retry-After, API error messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from segops.destinations.http import RetryPolicy, api_error, make_client, retry_after, send
from segops.errors import DestinationError, RetryableDestinationError
from segops.model import Connection, Platform

SECRET = "tok-very-secret"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A fake clock and sleep: sleeping advances the clock, every wait is kept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def client(handler: Handler, policy: RetryPolicy | None = None) -> httpx.Client:
    return make_client(
        "https://api.example.test",
        policy or RetryPolicy(),
        headers={"Authorization": SECRET},
        transport=httpx.MockTransport(handler),
    )


def scripted(*steps: int | Exception | httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    """Return a handler answering each request with the next step, and the requests seen."""
    seen: list[httpx.Request] = []
    answers: Iterator[int | Exception | httpx.Response] = iter(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = next(answers)
        if isinstance(step, Exception):
            raise step
        return step if isinstance(step, httpx.Response) else httpx.Response(step, json={})

    return handler, seen


def call(
    handler: Handler, policy: RetryPolicy, rec: Recorder, jitter: float = 1.0
) -> httpx.Response:
    return send(
        client(handler, policy),
        "POST",
        "/v1/things?secret=q",
        policy=policy,
        sleep=rec.sleep,
        clock=rec.clock,
        jitter=lambda: jitter,
        content=b"body",
    )


def test_429_honours_retry_after_seconds() -> None:
    rec = Recorder()
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}), 200)
    assert call(handler, RetryPolicy(), rec).status_code == 200
    assert rec.sleeps == [7.0] and len(seen) == 2
    assert seen[1].content == b"body"  # the body is sent again whole


def test_retry_after_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    response = httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    delay = retry_after(response)
    assert delay is not None and 25 <= delay <= 30
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(503)) is None


def test_503_backs_off_exponentially_with_full_jitter_under_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0, deadline=1000)
    rec = Recorder()
    handler, _ = scripted(503, 502, 500, 504, 503, 200)
    assert call(handler, policy, rec, jitter=1.0).status_code == 200
    assert rec.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]  # capped at max_delay

    rec = Recorder()
    handler, _ = scripted(503, 503, 503, 200)
    call(handler, policy, rec, jitter=0.25)
    assert rec.sleeps == [0.125, 0.25, 0.5]  # full jitter: a random fraction of the bound


def test_attempts_run_out_with_a_message_naming_method_and_path_only() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, deadline=1000)
    handler, seen = scripted(503, 503, 503, 503)
    with pytest.raises(RetryableDestinationError) as caught:
        call(handler, policy, Recorder())
    assert len(seen) == 3
    text = str(caught.value)
    assert "POST /v1/things" in text and "HTTP 503" in text and "3 attempts" in text
    assert SECRET not in text and "secret=q" not in text


def test_deadline_stops_retries_before_passing_it() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay=4, max_delay=100, deadline=10)
    rec = Recorder()
    handler, seen = scripted(*([503] * 20))
    with pytest.raises(RetryableDestinationError, match="10 s deadline"):
        call(handler, policy, rec)
    assert rec.sleeps == [4.0]  # after 4 s, waiting 8 more would pass 10 s: stop
    assert len(seen) == 2
    assert rec.now - 1000 <= policy.deadline

    rec = Recorder()
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(RetryableDestinationError, match="deadline"):
        call(handler, policy, rec)
    assert rec.sleeps == [] and len(seen) == 1  # a Retry-After past the deadline is not waited


def test_connect_errors_and_timeouts_are_retried() -> None:
    rec = Recorder()
    handler, seen = scripted(
        httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(200, json={})
    )
    assert call(handler, RetryPolicy(), rec).status_code == 200
    assert len(seen) == 3 and len(rec.sleeps) == 2

    handler, _ = scripted(*[httpx.ConnectError("refused")] * 2)
    with pytest.raises(
        RetryableDestinationError, match="ConnectError talking to api.example.test, 2 attempts"
    ):
        call(handler, RetryPolicy(max_attempts=2), Recorder())


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_returned_at_once(status: int) -> None:
    rec = Recorder()
    handler, seen = scripted(status, 200)
    assert call(handler, RetryPolicy(), rec).status_code == status
    assert len(seen) == 1 and rec.sleeps == []


def test_api_error_carries_the_apis_own_text() -> None:
    body = {"status": "error", "error": "mime_type is invalid"}
    error = api_error(httpx.Response(400, json=body), "create a document import")
    assert isinstance(error, DestinationError)
    assert str(error) == "create a document import: HTTP 400: mime_type is invalid"
    moengage = {"title": "Bad Request", "description": "segment exists"}
    assert str(api_error(httpx.Response(409, json=moengage), "x")) == (
        "x: HTTP 409: Bad Request: segment exists"
    )
    assert str(api_error(httpx.Response(502, text="<html>"), "x")) == "x: HTTP 502"
    assert str(api_error(httpx.Response(400, json=["a"]), "x")) == "x: HTTP 400"


def test_make_client_and_policy_from_connection() -> None:
    policy = RetryPolicy(timeout=5)
    with make_client("https://api.example.test", policy, headers={"Authorization": SECRET}) as c:
        assert str(c.base_url) == "https://api.example.test"
        assert c.timeout.read == 5 and c.timeout.connect == 5
        assert not c.follow_redirects
        assert SECRET not in repr(c.headers)  # httpx masks the Authorization header
    options = (("deadline", 30), ("max_attempts", 2), ("timeout", 9.5))
    connection = Connection("c", Platform.MEDIARITHMICS, Platform.MEDIARITHMICS, options)
    assert RetryPolicy.from_connection(connection) == RetryPolicy(
        max_attempts=2, deadline=30.0, timeout=9.5
    )
    default = Connection("c", Platform.MEDIARITHMICS, Platform.MEDIARITHMICS)
    assert RetryPolicy.from_connection(default) == RetryPolicy()
