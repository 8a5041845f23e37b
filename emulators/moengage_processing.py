"""The asynchronous side of the MoEngage emulator: download, parse, apply, call back.

One worker thread takes accepted operations in order. For each it waits `process_delay`,
downloads `file_url` (only from the allowed hosts: 127.0.0.1 serves both segops' HTTP
publisher and the tests' S3 server), reads the file by the reference's rules (§6: one value
per line, no header, no quoting, no empty rows; bad values are skipped and counted), applies
it, and POSTs a CallbackV2 to `callback_url` when there is one:
`{db_name, segment_name, request_id, status: 201, values_found, values_processed, user_count}`
or `{..., status: 400, error_message}` (download failed, file too large, daily user limit).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx  # noqa: TID251 - the emulators are not part of the segops package

_BAD_VALUE = re.compile(r'[,"#\s]')
_ZERO = "Created custom_segment contains 0 users."


@dataclass
class Segment:
    name: str
    cs_id: str
    attribute_name: str
    attribute_type: str = "string"
    users: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Job:
    operation: str  # create | add-users | remove-users | replace
    segment: Segment
    body: dict[str, Any]
    database: str
    request_id: str


class ProcessingError(Exception):
    """The file cannot be processed; the message is the callback's error_message."""


class Processor:
    def __init__(
        self,
        lock: threading.RLock,
        clock: Callable[[], float],
        delay: float,
        known_users: set[str] | None,
        max_file_bytes: int,
        allowed_hosts: frozenset[str],
        users_per_day: int,
    ) -> None:
        self.lock, self.clock, self.delay = lock, clock, delay
        self.known_users = known_users
        self.max_file_bytes, self.allowed_hosts = max_file_bytes, allowed_hosts
        self.users_per_day = users_per_day
        self.callbacks: list[dict[str, Any]] = []
        self.uploads: list[tuple[float, int]] = []  # (time, users) of processed files
        self.downloaded: list[bytes] = []  # every member file fetched, for tests to inspect
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._jobs.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def users_since(self, since: float) -> int:
        with self.lock:
            return sum(n for at, n in self.uploads if at > since)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                time.sleep(self.delay)
                self._callback(job, self._process(job))
            finally:
                self._jobs.task_done()
        self._jobs.task_done()

    def _process(self, job: Job) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "db_name": job.database,
            "segment_name": job.segment.name,
            "request_id": job.request_id,
        }
        try:
            values, found = self._read(job)
            user_count = self._apply(job, values)
        except ProcessingError as exc:
            return {**payload, "status": 400, "error_message": str(exc)}
        counts = {"values_found": found, "values_processed": len(values), "user_count": user_count}
        return {**payload, "status": 201, **counts}

    def _read(self, job: Job) -> tuple[set[str], int]:
        """Return the valid values of the job's file and the number of rows it has."""
        data = self._download(str(job.body["file_url"]))
        with self.lock:
            self.downloaded.append(data)
        if len(data) > self.max_file_bytes:
            raise ProcessingError(f"File size cannot be greater than 150MB. {_ZERO}")
        text = data.decode("utf-8", errors="replace")
        rows = text.split("\n")
        if rows and rows[-1] == "":
            rows.pop()  # the last line's terminator
        double = job.body["attribute_type"] == "double"
        return {r for r in rows if _valid(r, double)}, len(rows)

    def _download(self, url: str) -> bytes:
        if urlsplit(url).hostname not in self.allowed_hosts:
            raise ProcessingError(f"File download failed. {_ZERO}")
        for attempt in range(3):  # "MoEngage automatically retries before reporting a failure"
            try:
                response = httpx.get(url, timeout=10)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                return response.content
            time.sleep(0.02 * (attempt + 1))
        raise ProcessingError(f"File download failed. {_ZERO}")

    def _apply(self, job: Job, values: set[str]) -> int:
        """Apply the valid values to the segment; return how many are users MoEngage knows."""
        found = values if self.known_users is None else values & self.known_users
        with self.lock:
            now = self.clock()
            used = sum(n for at, n in self.uploads if at > now - 86400)
            if used + len(values) > self.users_per_day:
                raise ProcessingError(f"Daily file segment user limit exceeded. {_ZERO}")
            self.uploads.append((now, len(values)))
            users = job.segment.users
            if job.operation == "remove-users":
                users.difference_update(found)
            elif job.operation == "replace":
                users.clear()
                users.update(found)
            else:
                users.update(found)
        return len(found)

    def _callback(self, job: Job, payload: dict[str, Any]) -> None:
        with self.lock:
            self.callbacks.append(payload)
        url = job.body.get("callback_url")
        if not url or urlsplit(str(url)).hostname not in self.allowed_hosts:
            return
        for _ in range(3):  # the reference does not say whether MoEngage retries: try thrice
            try:
                if httpx.post(str(url), json=payload, timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)


def _valid(value: str, double: bool) -> bool:
    if not value or _BAD_VALUE.search(value):
        return False
    if double:
        try:
            float(value)
        except ValueError:
            return False
    return True
