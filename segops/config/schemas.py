"""Load the JSON Schemas shipped inside the package, as psf/black's `schema.py` does.

The root `schemas/` folder holds the same files for editors and people; a test keeps
the two copies identical.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

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
