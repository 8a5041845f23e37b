"""Checks shared by the destination tests: the platforms' file rules, as the reference states them.

mediarithmics USER_SEGMENT commands: reference `mediarithmics-user-segment-import.md` §5.1.
MoEngage request bodies: the OpenAPI document in `data/`; member files: reference §6.
"""

from __future__ import annotations

import csv
import io
import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

IDENTIFIERS = ("email_hash", "user_agent_id", "user_account_id")
SEGMENT_REFERENCES = (
    "segment_id",
    "segment_ids",
    "segment_technical_name",
    "segment_technical_names",
)
FIELDS = (
    "operation",
    "expiration_duration",
    "expiration_ts",
    "user_account_id",
    "compartment_id",
    "email_hash",
    "user_agent_id",
    *SEGMENT_REFERENCES,
    "data_bag",
)
OPENAPI = Path(__file__).parent / "data" / "moengage-file-segments-api-openapi.yml"
OPENAPI_URI = "urn:segops-test:moengage-file-segments"


def check_command(command: dict[str, Any]) -> str:
    """Assert one command follows the USER_SEGMENT field rules; return its operation."""
    assert set(command) <= set(FIELDS), f"unknown fields {set(command) - set(FIELDS)}"
    assert command["operation"] in ("UPDATE", "DELETE")
    duration = command["expiration_duration"]
    assert isinstance(duration, int) and not isinstance(duration, bool) and duration >= 0
    if "expiration_ts" in command:
        assert isinstance(command["expiration_ts"], int | float)
    identifiers = [f for f in IDENTIFIERS if f in command]
    assert len(identifiers) == 1, f"identifiers on one line: {identifiers}"
    assert isinstance(command[identifiers[0]], str) and command[identifiers[0]]
    if "compartment_id" in command:  # counts as one identifier with user_account_id only
        assert identifiers == ["user_account_id"]
        assert isinstance(command["compartment_id"], str)
    references = [f for f in SEGMENT_REFERENCES if f in command]
    assert len(references) == 1, f"segment references on one line: {references}"
    if "data_bag" in command:
        assert isinstance(command["data_bag"], str)
        assert isinstance(json.loads(command["data_bag"]), dict)
    return str(command["operation"])


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    """Parse NDJSON command text strictly: "\\n"-terminated lines, one compact object each."""
    assert text == "" or text.endswith("\n")
    assert not text.lstrip().startswith("["), "NDJSON has no enclosing array"
    commands = []
    for line in text.split("\n")[:-1]:
        assert line.startswith("{") and line.endswith("}") and not line.endswith(",}")
        command = json.loads(line)
        assert isinstance(command, dict)
        # canonical compact form, field order included
        assert line == json.dumps(command, ensure_ascii=False, separators=(",", ":"))
        assert list(command) == [f for f in FIELDS if f in command], "field order"
        check_command(command)
        commands.append(command)
    return commands


def parse_csv(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Parse a CSV command file with its header; return (header, commands), empty cells dropped."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    header = list(reader.fieldnames or [])
    assert header and len(set(header)) == len(header)
    assert set(header) <= set(FIELDS)
    assert header == [f for f in FIELDS if f in header], "column order"
    commands = []
    for row in reader:
        assert None not in row, "a line has more cells than the header"
        assert all(v is not None for v in row.values()), "a line has fewer cells than the header"
        command: dict[str, Any] = {k: v for k, v in row.items() if v != ""}
        command["expiration_duration"] = int(command["expiration_duration"])
        if "expiration_ts" in command:
            command["expiration_ts"] = int(command["expiration_ts"])
        check_command(command)
        commands.append(command)
    return header, commands


@cache
def _openapi() -> tuple[dict[str, Any], Registry[Any]]:
    document = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.2")  # JSON Schema 2020-12 dialect
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return document, Registry().with_resource(OPENAPI_URI, resource)


def body_validator(method: str, path: str) -> Draft202012Validator:
    """Return a validator for the JSON request body of the operation `method path`."""
    document, registry = _openapi()
    operation = document["paths"][path][method.lower()]
    assert "application/json" in operation["requestBody"]["content"]
    pointer = "/".join(
        [
            "#",
            "paths",
            path.replace("~", "~0").replace("/", "~1"),
            method.lower(),
            "requestBody",
            "content",
            "application~1json",
            "schema",
        ]
    )
    return Draft202012Validator(
        {"$ref": OPENAPI_URI + pointer}, registry=registry, format_checker=FormatChecker()
    )


def declared_properties(method: str, path: str) -> set[str]:
    """Return every property the operation's body schema declares (through allOf and $ref)."""
    document, _ = _openapi()
    schemas = document["components"]["schemas"]

    def walk(schema: dict[str, Any]) -> set[str]:
        if "$ref" in schema:
            return walk(schemas[schema["$ref"].rsplit("/", 1)[1]])
        found = set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            found |= walk(part)
        return found

    operation = document["paths"][path][method.lower()]
    return walk(operation["requestBody"]["content"]["application/json"]["schema"])


def check_request_body(method: str, path: str, body: dict[str, Any]) -> None:
    """Assert `body` validates against the operation's schema and uses only declared fields.

    The schemas allow extra properties, so unknown fields are checked separately; `uri` formats
    are checked here because jsonschema needs an optional package to check them.
    """
    errors = sorted(body_validator(method, path).iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]
    assert set(body) <= declared_properties(method, path), set(body) - declared_properties(
        method, path
    )
    for field in ("file_url", "callback_url"):
        if field in body:
            url = urlparse(body[field])
            assert url.scheme in ("file", "http", "https") and url.path, body[field]


def check_member_file(data: bytes, max_bytes: int | None = None) -> list[str]:
    """Assert a MoEngage member file follows the CSV rules; return its values."""
    if max_bytes is not None:
        assert len(data) <= max_bytes
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n")
    values = text.split("\n")[:-1]
    for value in values:
        assert value, "empty row"
        assert not set(value) & set(',"#\r'), f"special character in {value!r}"
    assert len(set(values)) == len(values), "duplicates"
    return values
