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
