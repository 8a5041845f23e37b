"""Load the JSON Schemas shipped inside the package, as psf/black's `schema.py` does, and
check documents against them.

The root `schemas/` folder holds the same files for editors and people; a test keeps
the two copies identical.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator, validators  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from segops.config.documents import Document, KeyPath
from segops.config.messages import message_for
from segops.errors import Problem

# Schemas a workspace is checked against: "segops" for segops.yaml, "segment" for manifests.
SCHEMA_NAMES = ("segops", "segment")


@cache
def _schema_text(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    resource = files("segops") / "schemas" / f"{name}.schema.json"
    return resource.read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """Return the packaged JSON Schema `name` ("segops" or "segment"), a fresh dict each call.

    Raises:
        ValueError: `name` is not a schema segops ships.
    """
    schema: dict[str, Any] = json.loads(_schema_text(name))
    return schema


def workspace_schema(name: str) -> dict[str, Any]:
    """Return schema `name` with the keys of every installed platform package added.

    The packaged schemas describe the built-in platforms (editors read them); a platform
    registered by another package brings the JSON Schema of its own connection and
    destination keys (`PlatformSpec.connection_schema` / `destination_schema`), merged in
    here. Which platform may use which key is checked by segops.config.checks.
    """
    from segops.destinations.registry import plugin_platforms

    schema = load_schema(name)
    plugins = plugin_platforms()
    if not plugins:
        return schema
    defs = schema["$defs"]
    if name == "segops":
        connection = defs["connection"]["properties"]
        connection["platform"]["enum"] += sorted(plugins)
        connection["target"]["enum"] += sorted(n for n, s in plugins.items() if s.writes_files)
        for spec in plugins.values():
            for key, value in spec.connection_schema.items():
                connection.setdefault(key, value)
    else:
        destination = defs["destination"]["properties"]
        for spec in plugins.values():
            for key, value in spec.destination_schema.items():
                destination.setdefault(key, value)
    return schema


def _is_finite_number(checker: Any, value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value)


def _is_integer(checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# YAML's .nan and .inf are floats that every range check lets through (nan compares false);
# and JSON Schema takes 30.0 for an integer, which YAML keeps a float all the way to the API.
_Validator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_finite_number, "integer": _is_integer}
    ),
)


@cache
def _validator(schema: str) -> Any:
    return _Validator(workspace_schema(schema))


def validate_document(doc: Document, schema: str) -> list[Problem]:
    """Return the problems of `doc` against the packaged JSON Schema `schema`, by line.

    `schema` is a name known to `segops.config.schemas.load_schema` ("segops" or "segment");
    the keys of installed platform packages are added to it.
    """
    problems: set[Problem] = set()
    for error in _validator(schema).iter_errors(doc.data):
        problems.update(_error_problems(doc, error))
    return sorted(problems, key=lambda p: (p.line or 0, p.path, p.message))


def _error_problems(doc: Document, error: ValidationError) -> list[Problem]:
    path: KeyPath = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        allowed = ", ".join(sorted(known))
        return [
            doc.problem((*path, key), f"unknown key {key!r}; allowed keys: {allowed}")
            for key in sorted(set(error.instance) - set(known))
        ]
    if "propertyNames" in error.schema_path:  # the error is about a key, not a value
        key = str(error.instance)
        return [doc.problem((*path, key), f"key {key!r}: {message_for(error)}")]
    return [doc.problem(path, message_for(error))]
