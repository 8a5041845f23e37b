"""MoEngage's answers, checked against the OpenAPI document before segops believes them.

- `accepted`: the 2xx answer of create / add-users / remove-users / replace,
  `ApiResponseSuccessV2` = {message: string, success: boolean, cs_name: string, cs_id:
  string}, every field optional. An empty body (the create 200 has no documented body) is
  an acceptance without a `cs_id`; anything else that is not such an object, or says
  `success: false`, is a DestinationError naming the call and never counts as accepted.
- `callback`: a `CallbackV2` payload: db_name, segment_name, request_id (strings) and
  status (integer) required; values_found, values_processed, user_count integers and
  error_message a string when present. Anything else is refused (and never confirms).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import httpx

from segops.destinations.http import read_json
from segops.errors import DestinationError

_TEXT_FIELDS: Final = ("message", "cs_name", "cs_id")
_CALLBACK_TEXT: Final = ("db_name", "segment_name", "request_id")
_CALLBACK_COUNTS: Final = ("values_found", "values_processed", "user_count")
# A cs_id is "a string" (reference §4); segops sends it back and keeps it in state, so it
# must be printable text of a sane length.
_CS_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def accepted(response: httpx.Response, what: str) -> Mapping[str, Any]:
    """Return the checked body of a 2xx answer.

    Raises:
        DestinationError: the body is not an ApiResponseSuccessV2, or refuses the request.
    """
    if not response.content.strip():
        return {}
    body = read_json(response, what)
    if not isinstance(body, dict):
        raise DestinationError(f"{what}: the answer is not a JSON object")
    for key in _TEXT_FIELDS:
        if key in body and not isinstance(body[key], str):
            raise DestinationError(f"{what}: the answer's {key} is not a string")
    if "cs_id" in body and not _CS_ID.fullmatch(body["cs_id"]):
        raise DestinationError(f"{what}: the answer's cs_id is not a segment id")
    success = body.get("success", True)
    if not isinstance(success, bool):
        raise DestinationError(f"{what}: the answer's success is not a boolean")
    if not success:
        raise DestinationError(f"{what}: HTTP {response.status_code} with success: false")
    return body


def callback_problem(payload: Any) -> str:
    """Return what makes `payload` not a CallbackV2, or "" when it is one."""
    if not isinstance(payload, dict):
        return "not a JSON object"
    for key in _CALLBACK_TEXT:
        if not isinstance(payload.get(key), str):
            return f"{key} is missing or not a string"
    if type(payload.get("status")) is not int:
        return "status is missing or not an integer"
    for key in _CALLBACK_COUNTS:
        value = payload.get(key)
        if key in payload and (type(value) is not int or value < 0):
            return f"{key} is not a count"
    if "error_message" in payload and not isinstance(payload["error_message"], str):
        return "error_message is not a string"
    return ""
