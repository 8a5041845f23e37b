"""An emulator of mediarithmics USER_SEGMENT bulk imports, on 127.0.0.1.

Follows ../shared/reference/mediarithmics-user-segment-import.md: `Authorization: <token>`
(no `Bearer`), `{"status": "ok", "data": ...}` envelopes, paginated lists, string ids,
document imports per datamart, one execution per uploaded file (raw body, NDJSON or CSV by
the import's mime type), processed asynchronously PENDING -> RUNNING -> SUCCEEDED. Bad lines
count in `result.total_failure` and are listed (line number and reason, never values) in an
error file served at `result.error_file_uri`. Where the reference is silent the emulator is
strict: errors are `{"status": "error", "error": "..."}` with 400/401/404/405.

    python -m emulators.mediarithmics --port 8080 --token-env MICS_API_TOKEN
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from emulators._server import EmulatorServer, Faults, Request, Response
from emulators.mediarithmics_data import (
    CONTENT_TYPES,
    FileError,
    Member,
    Membership,
    Reject,
    SegmentKey,
)
from emulators.mediarithmics_http import (
    BadRequest,
    NotFound,
    error,
    json_body,
    new_execution,
    now_ms,
    ok,
    page,
    public,
)

DOCUMENT_TYPES = (
    "USER_ACTIVITY",
    "USER_SEGMENT",
    "USER_PROFILE",
    "USER_CHOICE",
    "USER_IDENTIFIERS_ASSOCIATION_DECLARATIONS",
    "USER_IDENTIFIERS_DISSOCIATION_DECLARATIONS",
    "USER_IDENTIFIERS_DELETION",
)
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")
_IMPORTS = r"/v1/datamarts/(?P<dm>[^/]+)/document_imports"
_EXECUTIONS = _IMPORTS + r"/(?P<imp>[^/]+)/executions"


class MediarithmicsEmulator:
    """The document import API of one organisation; `members()` shows what landed."""

    def __init__(
        self,
        token: str,
        faults: Faults | None = None,
        datamarts: Iterable[str] = frozenset({"1509"}),
        process_delay: float = 0.05,
        reject: Reject | None = None,
        *,
        single_get: bool = True,
        port: int = 0,
    ) -> None:
        self._token = token
        self.datamarts = set(datamarts)
        self.process_delay = process_delay
        self.reject = reject  # called with every valid command; a text rejects the line
        self.single_get = single_get  # False: GET of one execution answers 404 (unconfirmed)
        self.fail_next_executions = 0  # that many next executions end FAILED, changing nothing
        # A broken list: every page of executions is full of others' and no total, forever.
        self.endless_pages = False
        self.server = EmulatorServer(self._handle, faults, port)
        self._lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._stopped = threading.Event()
        self._imports: dict[str, dict[str, Any]] = {}
        self._executions: dict[str, dict[str, Any]] = {}
        self._bodies: dict[str, bytes] = {}  # execution id -> uploaded file, until processed
        self._error_files: dict[str, bytes] = {}
        self._membership = Membership()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            ("POST", re.compile(_IMPORTS), self._create_import),
            ("GET", re.compile(_IMPORTS), self._list_imports),
            ("GET", re.compile(_IMPORTS + r"/(?P<imp>[^/]+)"), self._get_import),
            ("POST", re.compile(_EXECUTIONS), self._create_execution),
            ("GET", re.compile(_EXECUTIONS), self._list_executions),
            ("GET", re.compile(_EXECUTIONS + r"/(?P<ex>[^/]+)"), self._get_execution),
            ("POST", re.compile(_EXECUTIONS + r"/(?P<ex>[^/]+)/action"), self._action),
            ("GET", re.compile(r"/_emulator/error_files/(?P<ex>[^/]+)"), self._error_file),
        ]

    # lifecycle

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self) -> MediarithmicsEmulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.server.stop()

    def __enter__(self) -> MediarithmicsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what landed

    def members(self, datamart_id: str) -> dict[SegmentKey, set[Member]]:
        """Return the current members of every non-empty segment of a datamart."""
        with self._lock:
            return self._membership.members(datamart_id)

    def member_attributes(self, datamart_id: str) -> dict[SegmentKey, dict[Member, dict[str, Any]]]:
        """Return expiration_duration, expiration_ts and data_bag of every member."""
        with self._lock:
            return self._membership.attributes(datamart_id)

    def executions(self) -> list[dict[str, Any]]:
        """Return every execution, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(public(e))) for e in self._executions.values()]

    # routing

    def _handle(self, request: Request) -> Response:
        found = [(m, p.fullmatch(request.path), h) for m, p, h in self._routes]
        matched = [(m, match, h) for m, match, h in found if match is not None]
        if not matched:
            return error(404, "not found")
        route = next(((match, h) for m, match, h in matched if m == request.method), None)
        if route is None:
            return error(405, "method not allowed")
        if not request.path.startswith("/_emulator/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), self._token.encode()):
                return error(401, "authentication failed: missing or invalid API token")
        match, handler = route
        try:
            with self._lock:
                return handler(request, **match.groupdict())
        except NotFound as exc:
            return error(404, str(exc))
        except BadRequest as exc:
            return error(400, str(exc))

    def _import(self, dm: str, imp: str | None = None) -> dict[str, Any]:
        if dm not in self.datamarts:
            raise NotFound(f"datamart {dm} not found")
        document_import = self._imports.get(imp or "")
        if imp is not None and (document_import is None or document_import["datamart_id"] != dm):
            raise NotFound(f"document import {imp} not found in datamart {dm}")
        return document_import or {}

    def _execution(self, dm: str, imp: str, ex: str) -> dict[str, Any]:
        self._import(dm, imp)
        execution = self._executions.get(ex)
        if execution is None or execution["parameters"]["document_import_id"] != imp:
            raise NotFound(f"execution {ex} not found in document import {imp}")
        return execution

    # document imports

    def _create_import(self, request: Request, dm: str) -> Response:
        self._import(dm)
        body = json_body(request)
        document_type, mime_type = body.get("document_type"), body.get("mime_type")
        if document_type not in DOCUMENT_TYPES:
            raise BadRequest(f"document_type must be one of {list(DOCUMENT_TYPES)}")
        allowed = ["APPLICATION_X_NDJSON"] + (
            ["TEXT_CSV"] if document_type == "USER_SEGMENT" else []
        )
        if mime_type not in allowed:
            raise BadRequest(f"mime_type must be one of {allowed} for {document_type}")
        if str(body.get("encoding", "")).lower() not in ("utf-8", "utf8"):
            raise BadRequest("encoding is required and must be utf-8")
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise BadRequest("name is required")
        if body.get("priority", "MEDIUM") not in ("HIGH", "MEDIUM", "LOW"):
            raise BadRequest("priority must be HIGH, MEDIUM or LOW")
        new_id = str(next(self._ids))
        self._imports[new_id] = {
            "id": new_id,
            "datafarm_key": "DF_EU_2020_02",
            "datamart_id": dm,
            "document_type": document_type,
            "mime_type": mime_type,
            "encoding": body["encoding"],
            "name": body["name"],
            "priority": body.get("priority", "MEDIUM"),
        }
        return ok(self._imports[new_id])

    def _list_imports(self, request: Request, dm: str) -> Response:
        self._import(dm)
        found = [i for i in self._imports.values() if i["datamart_id"] == dm]
        return page(request, found)

    def _get_import(self, request: Request, dm: str, imp: str) -> Response:
        return ok(self._import(dm, imp))

    # executions

    def _create_execution(self, request: Request, dm: str, imp: str) -> Response:
        document_import = self._import(dm, imp)
        if document_import["document_type"] != "USER_SEGMENT":
            raise BadRequest("this emulator processes USER_SEGMENT imports only")
        expected = CONTENT_TYPES[document_import["mime_type"]]
        given = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if given != expected:
            raise BadRequest(f"Content-Type must be {expected} for this document import")
        if not request.body:
            raise BadRequest("the uploaded file is empty")
        new_id = str(next(self._ids))
        execution = new_execution(new_id, document_import)
        if self.fail_next_executions > 0:
            self.fail_next_executions -= 1
            execution["_fail"] = True
        self._executions[new_id] = execution
        self._bodies[new_id] = request.body
        threading.Thread(target=self._process, args=(new_id,), daemon=True).start()
        return ok(public(execution))

    def _list_executions(self, request: Request, dm: str, imp: str) -> Response:
        document_import = self._import(dm, imp)
        if self.endless_pages:
            size = int(request.query.get("max_results", ["50"])[0])
            first = int(request.query.get("first_result", ["0"])[0])
            filler = [
                public(new_execution(str(next(self._ids)), document_import)) for _ in range(size)
            ]
            listing = {"status": "ok", "data": filler, "count": size}
            return Response.json(200, {**listing, "first_result": first, "max_results": size})
        found = [
            e for e in self._executions.values() if e["parameters"]["document_import_id"] == imp
        ]
        return page(request, [public(e) for e in reversed(found)])  # newest first

    def _get_execution(self, request: Request, dm: str, imp: str, ex: str) -> Response:
        if not self.single_get:
            return error(404, "not found")
        return ok(public(self._execution(dm, imp, ex)))

    def _action(self, request: Request, dm: str, imp: str, ex: str) -> Response:
        execution = self._execution(dm, imp, ex)
        if json_body(request).get("action") != "CANCEL":
            raise BadRequest("action must be CANCEL")
        if execution["status"] in TERMINAL:
            raise BadRequest(f"execution {ex} is already {execution['status']}")
        execution["status"] = "CANCELED"
        self._bodies.pop(ex, None)
        return ok(public(execution))

    def _error_file(self, request: Request, ex: str) -> Response:
        data = self._error_files.get(ex)
        if data is None:
            return error(404, f"no error file for execution {ex}")
        return Response(200, data, {"Content-Type": "application/x-ndjson"})

    # processing

    def _process(self, ex: str) -> None:
        """Run one execution: RUNNING after `process_delay`, terminal after another."""
        if self._stopped.wait(self.process_delay):
            return
        with self._lock:
            execution = self._executions[ex]
            if execution["status"] != "PENDING":
                return
            execution["status"], execution["start_date"] = "RUNNING", now_ms()
        if self._stopped.wait(self.process_delay):
            return
        with self._lock:
            body = self._bodies.pop(ex, None)
            if execution["status"] != "RUNNING" or body is None:
                return
            if execution.pop("_fail", False):
                self._finish(execution, "FAILED", error="the execution failed (injected fault)")
            else:
                self._apply_file(execution, body)

    def _apply_file(self, execution: dict[str, Any], body: bytes) -> None:
        params = execution["parameters"]
        mime = self._imports[params["document_import_id"]]["mime_type"]
        try:
            success, errors = self._membership.apply_file(
                params["datamart_id"], body, mime, self.reject
            )
        except FileError as exc:
            self._finish(execution, "FAILED", error=str(exc))
            return
        uri = None
        if errors:
            lines = "".join(json.dumps(e) + "\n" for e in errors)
            self._error_files[execution["id"]] = lines.encode()
            uri = f"{self.base_url}/_emulator/error_files/{execution['id']}"
        execution["result"] = {
            "total_success": success,
            "total_failure": len(errors),
            "input_file_name": f"{execution['id']}.{'csv' if mime == 'TEXT_CSV' else 'ndjson'}",
            "input_file_uri": params["file_uri"],
            "error_file_uri": uri,
        }
        self._finish(execution, "SUCCEEDED", erroneous=1 if errors else 0)

    def _finish(
        self, execution: dict[str, Any], status: str, error: str | None = None, erroneous: int = 0
    ) -> None:
        execution["status"] = status
        execution["duration"] = now_ms() - (execution["start_date"] or execution["creation_date"])
        execution["completed_tasks"] = 1
        execution["erroneous_tasks"] = erroneous if error is None else 1
        execution["error"] = None if error is None else {"message": error}


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted; the token comes from the named variable."""
    parser = argparse.ArgumentParser(prog="python -m emulators.mediarithmics")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-env", required=True, help="variable holding the API token")
    parser.add_argument("--datamart", action="append", help="a datamart id (default 1509)")
    parser.add_argument("--process-delay", type=float, default=0.5)
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"environment variable {args.token_env} is not set", file=sys.stderr)
        return 2
    emulator = MediarithmicsEmulator(
        token, datamarts=args.datamart or ["1509"], process_delay=args.process_delay, port=args.port
    )
    emulator.start()
    print(f"mediarithmics emulator on {emulator.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
