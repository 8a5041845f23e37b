"""The mediarithmics document import endpoints segops calls, each through `http.send`.

Reference §2-§6: responses are `{"status": "ok", "data": ...}` envelopes, ids are strings
(of digits), lists are paginated with `first_result` / `max_results`. Answers are parsed
strictly: a wrong type, a missing field or an id that is not a string of digits is a
DestinationError naming the call, and never counts as a confirmation. Whether one
execution can be read by id is not confirmed (reference §3), so `execution()` falls back to
listing the import's executions when that call answers 404 or 405, and keeps using the
list from then on; the listing stops at the poll deadline and after `MAX_PAGES` pages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from segops.destinations.http import OutOfTime, RetryPolicy, api_error, read_json, send
from segops.destinations.mediarithmics import commands as mics
from segops.errors import DestinationError

SUCCEEDED: Final = frozenset({"SUCCEEDED", "SUCCESS"})
FAILED: Final = frozenset({"FAILED", "CANCELED", "LOST", "EXECUTOR_NOT_RESPONDING"})
PAGE_SIZE: Final = 100
MAX_PAGES: Final = 100  # executions listed at most: MAX_PAGES * PAGE_SIZE, newest first
_ID = re.compile(r"[0-9]{1,20}")
# The reference lists ten statuses and says to treat any other as still running.
_STATUS = re.compile(r"[A-Z][A-Z_]{0,63}")


class ImportNotFoundError(DestinationError):
    """A document import (or its datamart) answered 404."""


class AuthError(DestinationError):
    """The API refused the token (401/403): every other call would fail the same way."""


@dataclass(frozen=True, slots=True)
class Execution:
    """An execution as read from the API, checked (reference §6)."""

    id: str
    status: str
    total_success: int | None = None  # result.*, present once it finished
    total_failure: int | None = None
    error_file_uri: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in SUCCEEDED or self.status in FAILED


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
        what = f"create a document import in datamart {datamart_id}"
        response = self._send("POST", path, json=mics.document_import_body(mime, name))
        return _id(_data(self._checked(response, what), what), what)

    def upload(self, datamart_id: str, import_id: str, body: bytes, mime: str) -> str:
        """Upload one command file as a new execution; return the execution id.

        Raises:
            ImportNotFoundError: the import is gone (the caller creates a new one).
        """
        path = f"/v1/datamarts/{datamart_id}/document_imports/{import_id}/executions"
        headers = {"Content-Type": mics.CONTENT_TYPES[mime]}
        response = self._send("POST", path, content=body, headers=headers)
        what = f"upload to document import {import_id} of datamart {datamart_id}"
        return parse_execution(_data(self._checked(response, what), what), what).id

    def execution(
        self, datamart_id: str, import_id: str, execution_id: str, until: float | None = None
    ) -> Execution:
        """Return the execution, by id or from the import's list, by `until` (on the clock)."""
        base = f"/v1/datamarts/{datamart_id}/document_imports/{import_id}/executions"
        what = f"read execution {execution_id} of document import {import_id}"
        if self.single_get:
            response = self._send("GET", f"{base}/{execution_id}", until=until)
            if response.status_code not in (404, 405):
                found = parse_execution(_data(self._checked(response, what), what), what)
                if found.id != execution_id:
                    raise DestinationError(f"{what}: the answer is about execution {found.id}")
                return found
            self.single_get = False
        return self._listed(base, execution_id, what, until)

    def _listed(self, base: str, execution_id: str, what: str, until: float | None) -> Execution:
        """Return the execution from the import's list, paging at most MAX_PAGES pages."""
        first = 0
        for _ in range(MAX_PAGES):
            if until is not None and self._clock() >= until:
                raise OutOfTime(f"{what}: poll_timeout passed while listing executions")
            params = {"first_result": first, "max_results": PAGE_SIZE}
            document = self._checked(self._send("GET", base, params=params, until=until), what)
            page, total = _page(document, what)
            for item in page:
                if (found := parse_execution(item, what)).id == execution_id:
                    return found
            first += len(page)
            if len(page) < PAGE_SIZE or (total is not None and first >= total):
                raise DestinationError(f"{what}: not in the import's {first} executions")
        raise DestinationError(f"{what}: not in the first {MAX_PAGES} pages of executions")

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
        document = read_json(response, what)
        if not isinstance(document, dict) or document.get("status") != "ok":
            raise DestinationError(f'{what}: the answer\'s status is not "ok"')
        return document


def _data(document: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    data = document.get("data")
    if not isinstance(data, dict):
        raise DestinationError(f"{what}: the answer has no data object")
    return data


def _id(data: Mapping[str, Any], what: str) -> str:
    value = data.get("id")
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise DestinationError(f"{what}: the answer's id is not a string of digits")
    return value


def _page(document: Mapping[str, Any], what: str) -> tuple[list[Any], int | None]:
    """Return the items of a list answer and its `total` (None when the list omits it)."""
    page, total = document.get("data"), document.get("total")
    if not isinstance(page, list):
        raise DestinationError(f"{what}: the list answer has no data list")
    if total is not None and not _count(total):
        raise DestinationError(f"{what}: the list answer's total is not a count")
    return page, total


def parse_execution(data: Any, what: str) -> Execution:
    """Return the checked execution object `data`.

    Raises:
        DestinationError: a field has the wrong type, or a SUCCEEDED execution lacks its
            result counts (it must never pass for a confirmation).
    """
    if not isinstance(data, dict):
        raise DestinationError(f"{what}: an execution is not an object")
    status = data.get("status")
    if not isinstance(status, str) or not _STATUS.fullmatch(status):
        raise DestinationError(f"{what}: the execution's status is not a status name")
    result = data.get("result")
    if result is None:
        result = {}
    elif not isinstance(result, dict):
        raise DestinationError(f"{what}: the execution's result is not an object")
    counts = {}
    for key in ("total_success", "total_failure"):
        value = result.get(key)
        if not (value is None or _count(value)) or (value is None and status in SUCCEEDED):
            raise DestinationError(f"{what}: the execution's result.{key} is not a count")
        counts[key] = value
    uri = result.get("error_file_uri")
    if uri is not None and not isinstance(uri, str):
        raise DestinationError(f"{what}: the execution's result.error_file_uri is not text")
    return Execution(_id(data, what), status, error_file_uri=uri or None, **counts)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
