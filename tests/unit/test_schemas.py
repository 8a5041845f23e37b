"""The JSON Schemas: valid, documented, closed, and shipped as exact copies in the package."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from segops.config.schemas import SCHEMA_NAMES, load_schema

REPO = Path(__file__).resolve().parents[2]
# Keywords whose subschemas only constrain what the main schema already declares.
_CONDITIONS = {"if", "then", "else", "not", "allOf", "oneOf", "anyOf", "propertyNames"}


def test_packaged_schemas_are_exact_copies_of_the_root_ones() -> None:
    """`make schemas` copies schemas/ into segops/schemas/; run it after editing a schema."""
    root = {p.name: p.read_bytes() for p in (REPO / "schemas").glob("*.json")}
    packaged = {p.name: p.read_bytes() for p in (REPO / "segops" / "schemas").glob("*.json")}
    assert sorted(packaged) == sorted(root)
    for name, data in root.items():
        assert packaged[name] == data, f"segops/schemas/{name} differs: run `make schemas`"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://segops.dev/schemas/{name}.schema.json"
    assert schema == json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())


def test_load_schema_returns_a_fresh_dict() -> None:
    first = load_schema("segment")
    first["title"] = "changed"
    assert load_schema("segment")["title"] != "changed"


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        load_schema("plan-v0")


def _object_schemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield every object schema that declares properties, outside conditions."""
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for key, value in node.items():
            if key not in _CONDITIONS:
                yield from _object_schemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _object_schemas(item, f"{path}/{index}")


def _described(schema: dict[str, Any], root: dict[str, Any]) -> bool:
    if "description" in schema:
        return True
    ref = schema.get("$ref", "")
    return ref.startswith("#/$defs/") and "description" in root["$defs"][ref.split("/")[-1]]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_object_is_closed_and_every_property_described(name: str) -> None:
    root = load_schema(name)
    objects = list(_object_schemas(root))
    assert objects
    for path, schema in objects:
        assert schema.get("additionalProperties") is False, f"{path} allows unknown keys"
        for key, prop in schema["properties"].items():
            assert _described(prop, root), f"{path}/properties/{key} has no description"
