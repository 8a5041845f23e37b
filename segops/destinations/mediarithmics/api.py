"""The mediarithmics document import endpoints segops calls, each through `_http.send`.

Reference §2-§6: responses are `{"status": "ok", "data": ...}` envelopes, ids are strings,
lists are paginated with `first_result` / `max_results`. Whether one execution can be read
by id is not confirmed (reference §3), so `execution()` falls back to listing the import's
executions when that call answers 404 or 405, and keeps using the list from then on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from segops.destinations.http import RetryPolicy, api_error, send
from segops.destinations.mediarithmics import commands as mics
from segops.errors import DestinationError

SUCCEEDED: Final = frozenset({"SUCCEEDED", "SUCCESS"})
FAILED: Final = frozenset({"FAILED", "CANCELED", "LOST", "EXECUTOR_NOT_RESPONDING"})
PAGE_SIZE: Final = 100


class ImportNotFoundError(DestinationError):
    """A document import (or its datamart) answered 404."""


class AuthError(DestinationError):
    """The API refused the token (401/403): every other call would fail the same way."""


class MediarithmicsApi:
    """Create imports, upload executions and read them back; errors never hold the token."""

    def __init__(
        self,
        client: httpx.Client,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._policy = client, policy
        self._sleep, self._clock = sleep, clock
        self.single_get = True  # False once GET of one execution answered 404/405

    def create_import(self, datamart_id: str, mime: str, name: str) -> str:
        """Create a USER_SEGMENT document import; return its id."""
        path = f"/v1/datamarts/{datamart_id}/document_imports"
        body = mics.document_import_body(mime, name)
        response = self._send("POST", path, json=body)
        data = _data(self._checked(response, f"create a document import in datamart {datamart_id}"))
        return _id(data, "document import")

    def upload(self, datamart_id: str, import_id: str, body: bytes, mime: str) -> str:
        """Upload one command file as a new execution; return the execution id.

        Raises:
            ImportNotFoundError: the import is gone (the caller creates a new one).
        """
        path = f"/v1/datamarts/{datamart_id}/document_imports/{import_id}/executions"
        headers = {"Content-Type": mics.CONTENT_TYPES[mime]}
        response = self._send("POST", path, content=body, headers=headers)
        what = f"upload to document import {import_id} of datamart {datamart_id}"
        return _id(_data(self._checked(response, what)), "execution")

    def execution(self, datamart_id: str, import_id: str, execution_id: str) -> Mapping[str, Any]:
        """Return the execution object, by id or from the import's list of executions."""
        base = f"/v1/datamarts/{datamart_id}/document_imports/{import_id}/executions"
        what = f"read execution {execution_id} of document import {import_id}"
        if self.single_get:
            response = self._send("GET", f"{base}/{execution_id}")
            if response.status_code not in (404, 405):
                return _data(self._checked(response, what))
            self.single_get = False
        first = 0
        while True:
            params = {"first_result": first, "max_results": PAGE_SIZE}
            document = self._checked(self._send("GET", base, params=params), what)
            page = document.get("data")
            if not isinstance(page, list):
                raise DestinationError(f"{what}: the list response has no data list")
            for item in page:
                if isinstance(item, dict) and str(item.get("id")) == execution_id:
                    return item
            first += len(page)
            total = document.get("total")
            if not page or (isinstance(total, int) and first >= total) or len(page) < PAGE_SIZE:
                raise DestinationError(f"{what}: not in the import's {first} executions")

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return send(
            self._client,
            method,
            path,
            policy=self._policy,
            sleep=self._sleep,
            clock=self._clock,
            **kwargs,
        )

    def _checked(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """Return the JSON envelope of a 2xx response; raise the API's error otherwise."""
        if response.status_code in (401, 403):
            raise AuthError(str(api_error(response, f"{what}: the API token was refused")))
        if response.status_code == 404:
            raise ImportNotFoundError(str(api_error(response, what)))
        if not response.is_success:
            raise api_error(response, what)
        try:
            document = response.json()
        except ValueError:
            raise DestinationError(f"{what}: the response is not JSON") from None
        if not isinstance(document, dict) or document.get("status") != "ok":
            raise DestinationError(f"{what}: the response status is not ok")
        return document


def _data(document: Mapping[str, Any]) -> Mapping[str, Any]:
    data = document.get("data")
    if not isinstance(data, dict):
        raise DestinationError("the response has no data object")
    return data


def _id(data: Mapping[str, Any], what: str) -> str:
    value = data.get("id")
    if value is None or isinstance(value, bool) or str(value) == "":
        raise DestinationError(f"the created {what} has no id")
    return str(value)


def result_counts(execution: Mapping[str, Any]) -> tuple[int, int, str | None]:
    """Return (total_success, total_failure, error_file_uri) of a finished execution."""
    result = execution.get("result")
    if not isinstance(result, dict):
        return 0, 0, None
    uri = result.get("error_file_uri")
    return (
        _count(result.get("total_success")),
        _count(result.get("total_failure")),
        str(uri) if uri else None,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
