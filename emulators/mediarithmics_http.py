"""The mediarithmics emulator's HTTP shapes: envelopes, errors, pagination, execution objects.

Reference §2 (envelopes, pagination, string ids) and §6 (the execution object).
"""

from __future__ import annotations

import time
from typing import Any

from emulators._server import Request, Response


def ok(data: Any) -> Response:
    return Response.json(200, {"status": "ok", "data": data})


def error(status: int, message: str) -> Response:
    return Response.json(status, {"status": "error", "error": message})


def now_ms() -> int:
    return int(time.time() * 1000)


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


def json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadRequest("Content-Type must be application/json")
    try:
        body = request.json()
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def page(request: Request, items: list[dict[str, Any]]) -> Response:
    """Return one page of `items` as `first_result` and `max_results` (default 0, 50) ask."""
    try:
        first = int(request.query.get("first_result", ["0"])[0])
        size = int(request.query.get("max_results", ["50"])[0])
    except ValueError:
        raise BadRequest("first_result and max_results must be integers") from None
    if first < 0 or not 1 <= size <= 1000:
        raise BadRequest("first_result must be >= 0 and max_results within 1..1000")
    chunk = items[first : first + size]
    return Response.json(
        200,
        {
            "status": "ok",
            "data": chunk,
            "count": len(chunk),
            "total": len(items),
            "first_result": first,
            "max_results": size,
        },
    )


def new_execution(new_id: str, document_import: dict[str, Any]) -> dict[str, Any]:
    dm, imp = document_import["datamart_id"], document_import["id"]
    return {
        "id": new_id,
        "status": "PENDING",
        "creation_date": now_ms(),
        "start_date": None,
        "duration": None,
        "organisation_id": "1",
        "user_id": "1",
        "job_type": "DOCUMENT_IMPORT",
        "import_mode": "MANUAL_FILE",
        "import_type": None,
        "num_tasks": 1,
        "completed_tasks": 0,
        "erroneous_tasks": 0,
        "debug": None,
        "error": None,
        "external_model_name": None,
        "parameters": {
            "datamart_id": dm,
            "document_import_id": imp,
            "document_type": document_import["document_type"],
            "file_uri": f"mics://data_file/datamarts/{dm}/document_imports/{imp}/{new_id}",
        },
        "result": None,
    }


def public(execution: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in execution.items() if not k.startswith("_")}
