"""docs/configuration.md is generated from the JSON Schemas and must match them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen_config_docs.py"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    """Import scripts/gen_config_docs.py (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_config_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_configuration_md_is_up_to_date(gen: ModuleType) -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == gen.render(), (
        "docs/configuration.md differs from what scripts/gen_config_docs.py generates from "
        "schemas/: run `make docs` and commit the result"
    )


def leaf_paths(schema: dict, root: dict, prefix: str = "") -> set[str]:  # type: ignore[type-arg]
    """Return every property path of `schema`, written the way the page writes them."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    found: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        found.add(prefix + key)
        if "x-same-as" in sub:  # the keys of another path, documented there once
            assert sub["x-same-as"] in root["properties"], sub["x-same-as"]
            continue
        found |= leaf_paths(sub, root, f"{prefix}{key}.")
        items = sub.get("items")
        if isinstance(items, dict):
            found |= leaf_paths(items, root, f"{prefix}{key}[].")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and not schema.get("properties"):
        found |= leaf_paths(extra, root, f"{prefix}<name>.")
    return found


@pytest.mark.parametrize("name", ["segops.schema.json", "segment.schema.json"])
def test_every_key_of_the_schemas_has_an_entry(name: str) -> None:
    root = json.loads((REPO / "schemas" / name).read_text())
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [p for p in sorted(leaf_paths(root, root)) if f"### `{p}`" not in page]
    assert not missing, f"keys without an entry in docs/configuration.md: {missing}"


def test_new_keys_defs_and_rules_appear(gen: ModuleType, tmp_path: Path) -> None:
    """A key, a $def and a rule added later show up without changing the script."""
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    path = tmp_path / "schemas" / "segops.schema.json"
    schema = json.loads(path.read_text())
    schema["$defs"]["retry"] = {
        "description": "How often to retry (default 3).",
        "type": "object",
        "properties": {"times": {"type": "integer", "minimum": 1, "description": "Tries."}},
    }
    schema["properties"]["retry"] = {"$ref": "#/$defs/retry"}
    schema["allOf"] = [{"if": {"required": ["retry"]}, "then": {"not": {"required": ["state"]}}}]
    path.write_text(json.dumps(schema))
    page = gen.render(tmp_path)
    assert "### `retry`" in page and "### `retry.times`" in page
    assert "**Default:** 3" in page
    assert "When `retry` is set: it must match" in page  # a rule it cannot word: as JSON
