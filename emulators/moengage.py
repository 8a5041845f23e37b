"""An emulator of the MoEngage File Segment API (v2), on 127.0.0.1.

Follows ../shared/reference/moengage-file-segments.md and the OpenAPI document copied in
`openapi/`: HTTP Basic auth (workspace id : API key), JSON bodies validated against the
operation's request schema (`Content-Type: application/json` required), the documented 202
bodies and `{"title", "description"}` errors (400, 401, 404, 409, 429), quotas over rolling
windows, and asynchronous processing: one worker downloads each `file_url`, applies it and
POSTs a CallbackV2 to `callback_url` (see moengage_processing.py).

Where the reference is silent the emulator picks, and says so:
- create/add-users/remove-users *and* replace count toward the operation quotas;
  the user quota counts the valid lines of processed files, and a file that would pass it
  fails in its callback (400);
- add-users / remove-users with another `attribute_name` than the segment's are refused (400);
  replace sets the segment's attribute;
- member files have no header row: every line is a value.

    python -m emulators.moengage --port 8080 --workspace-id W --api-key-env MOE_API_KEY
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml  # noqa: TID251 - the emulators are not part of the segops package
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from emulators._server import EmulatorServer, Faults, Request, Response
from emulators.moengage_processing import Job, Processor, Segment

OPENAPI = Path(__file__).parent / "openapi" / "moengage-file-segments-api-openapi.yml"
_URI = "urn:segops-emulator:moengage-file-segments"
CREATE, ADD, REMOVE, REPLACE = "create", "add-users", "remove-users", "replace"
ROUTES = {
    ("POST", "/v2/custom-segments/file-segment"): CREATE,
    ("PUT", "/v2/custom-segments/file-segment/add-users"): ADD,
    ("PUT", "/v2/custom-segments/file-segment/remove-users"): REMOVE,
    ("PUT", "/v2/custom-segments/file-segment/replace"): REPLACE,
}
MESSAGES = {
    CREATE: "File-segment creation request accepted",
    ADD: "File-segment user-add request accepted",
    REMOVE: "File-segment user-remove request accepted",
    REPLACE: "File-segment user-replace request accepted",
}
HOUR, DAY = 3600.0, 86400.0


class MoEngageEmulator:
    """One MoEngage workspace's file segments; `segments()` shows what landed."""

    def __init__(
        self,
        workspace_id: str,
        api_key: str,
        faults: Faults | None = None,
        limits: tuple[int, int, int] = (10, 100, 2_000_000),
        process_delay: float = 0.05,
        known_users: set[str] | None = None,
        *,
        port: int = 0,
        clock: Callable[[], float] = time.time,
        max_file_bytes: int = 150_000_000,
        allowed_hosts: frozenset[str] = frozenset({"127.0.0.1", "localhost"}),
    ) -> None:
        self.workspace_id, self._api_key = workspace_id, api_key
        self.ops_per_hour, self.ops_per_day, self.users_per_day = limits
        self.quota_retry_after: int | None = None  # a Retry-After on quota 429s (undocumented)
        self.clock = clock
        self.lock = threading.RLock()
        self._segments: dict[str, Segment] = {}  # by name
        self.operations: list[tuple[float, str]] = []  # (time, operation) accepted
        self.processor = Processor(
            self.lock, clock, process_delay, known_users, max_file_bytes, allowed_hosts,
            users_per_day=self.users_per_day,
        )  # fmt: skip
        self.server = EmulatorServer(self._handle, faults, port)

    # lifecycle

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        """Every CallbackV2 payload posted so far, in order."""
        return list(self.processor.callbacks)

    def start(self) -> MoEngageEmulator:
        self.server.start()
        self.processor.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.processor.stop()

    def __enter__(self) -> MoEngageEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every accepted file is processed; return False on timeout."""
        return self.processor.wait_idle(timeout)

    def segments(self) -> dict[str, set[str]]:
        """Return each segment's users, by segment name."""
        with self.lock:
            return {name: set(s.users) for name, s in self._segments.items()}

    def segment(self, name: str) -> Segment | None:
        with self.lock:
            return self._segments.get(name)

    # requests

    def _handle(self, request: Request) -> Response:
        if not self._authorized(request.headers.get("authorization", "")):
            return _error(401, "Authentication required", "Invalid workspace id or API key")
        operation = ROUTES.get((request.method, request.path))
        if operation is None:
            return _error(404, "Not Found", f"No endpoint {request.method} {request.path}")
        body, problem = _parse(request, operation)
        if problem:
            return _error(400, "Invalid Request", problem)
        assert body is not None
        with self.lock:
            now = self.clock()
            if not self._quota_allows(now):
                wait = self.quota_retry_after
                headers = {} if wait is None else {"Retry-After": str(wait)}
                text = "File segment operation limit reached"
                return Response.json(
                    429, {"title": "Too Many Requests", "description": text}, headers
                )
            segment, response = self._target(operation, body)
            if segment is None:
                return response
            self.operations.append((now, operation))
        database = request.headers.get("database") or "emulator_db"
        self.processor.submit(Job(operation, segment, body, database, secrets.token_hex(16)))
        return response

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = f"{self.workspace_id}:{self._api_key}"
        return scheme.lower() == "basic" and hmac.compare_digest(decoded, expected)

    def _quota_allows(self, now: float) -> bool:
        hour = sum(1 for at, _ in self.operations if at > now - HOUR)
        day = sum(1 for at, _ in self.operations if at > now - DAY)
        users = self.processor.users_since(now - DAY)
        return hour < self.ops_per_hour and day < self.ops_per_day and users < self.users_per_day

    def _target(self, operation: str, body: dict[str, Any]) -> tuple[Segment | None, Response]:
        """Return the segment `body` acts on and the answer; (None, error) when refused."""
        name = body["name"]
        if operation == CREATE:
            if name in self._segments:
                return None, _error(409, "Resource not created", f"Name already exists : {name}")
            segment = Segment(name, secrets.token_hex(12), body["attribute_name"])
            segment.attribute_type = body["attribute_type"]
            self._segments[name] = segment
            return segment, _accepted(operation, segment)
        found = self._find(body.get("cs_id"), name)
        if found is None:
            text = f"Segment not found with the given name: {name}"
            return None, _error(404, "Entity Not Found", text)
        if operation == REPLACE:
            found.attribute_name = body["attribute_name"]
            found.attribute_type = body["attribute_type"]
        elif body["attribute_name"] != found.attribute_name:
            text = "attribute_name differs from the attribute the segment was created with"
            return None, _error(400, "Invalid Request", text)
        return found, _accepted(operation, found)

    def _find(self, cs_id: object, name: str) -> Segment | None:
        if cs_id:  # cs_id wins over name (reference §3)
            return next((s for s in self._segments.values() if s.cs_id == cs_id), None)
        return self._segments.get(name)


def _accepted(operation: str, segment: Segment) -> Response:
    body = {
        "message": MESSAGES[operation],
        "success": True,
        "cs_name": segment.name,
        "cs_id": segment.cs_id,
    }
    return Response.json(202, body)


def _error(status: int, title: str, description: str) -> Response:
    return Response.json(status, {"title": title, "description": description})


def _parse(request: Request, operation: str) -> tuple[dict[str, Any] | None, str]:
    """Return (body, "") or (None, what is wrong), never echoing a value of the body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/json":
        return None, "Content-Type must be application/json"
    try:
        body = request.json()
    except ValueError:
        return None, "body is not JSON"
    if not isinstance(body, dict):
        return None, "body is not a JSON object"
    for error in _validator(request.method, request.path).iter_errors(body):
        return None, f"{error.json_path}: does not satisfy '{error.validator}'"
    for key in ("file_url", "callback_url"):
        if key in body and not _http_url(body[key]):
            return None, f"$.{key}: is not an absolute http(s) URL"
    return body, ""


def _http_url(value: object) -> bool:
    parts = urlsplit(value) if isinstance(value, str) else None
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)


@cache
def _validator(method: str, path: str) -> Draft202012Validator:
    """Return a validator of the JSON request body of the operation `method path`."""
    document = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        _URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    escaped = path.replace("~", "~0").replace("/", "~1")
    pointer = f"#/paths/{escaped}/{method.lower()}/requestBody/content/application~1json/schema"
    return Draft202012Validator(
        {"$ref": _URI + pointer}, registry=registry, format_checker=FormatChecker()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workspace-id", default=os.environ.get("MOE_WORKSPACE_ID", "demo"))
    parser.add_argument("--api-key-env", default="MOE_API_KEY")
    parser.add_argument("--process-delay", type=float, default=0.5)
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        print(f"set {args.api_key_env} to the API key clients must send", file=sys.stderr)
        return 2
    emulator = MoEngageEmulator(
        args.workspace_id, api_key, process_delay=args.process_delay, port=args.port
    ).start()
    print(f"MoEngage emulator on {emulator.base_url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
