"""Every checked string of the JSON Schemas matches the whole value, in Python and in editors.

Python's `$` also matches before a final newline, and jsonschema searches (`re.search`):
a pattern ending in a bare `$` lets `"cart\\n"` through, and the newline reaches addresses,
state keys and output paths. The schemas end their patterns with `$(?!\\n)`, which means
"end of the value" both in Python and in ECMAScript (editors), where `$` already is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from segops.config.schemas import SCHEMA_NAMES, load_schema

# What a careless edit or a YAML block scalar (`name: |`) adds around a value.
MUTATIONS = {
    "trailing LF": lambda v: v + "\n",
    "trailing CRLF": lambda v: v + "\r\n",
    "trailing CR": lambda v: v + "\r",
    "leading LF": lambda v: "\n" + v,
    "leading space": lambda v: " " + v,
    "trailing space": lambda v: v + " ",
    "trailing tab": lambda v: v + "\t",
    "trailing U+2028": lambda v: v + "\u2028",
    "trailing NUL": lambda v: v + "\x00",
}
# Strings that only people read; nothing builds a path, an address or a request from them.
FREE_TEXT = {
    ("segment", "/properties/metadata/properties/description"),
    ("segment", "/properties/metadata/properties/owner"),
    ("segment", "/properties/metadata/properties/labels/additionalProperties"),
    # SQL text of any shape, checked by the database it runs on (errors name the key)
    ("segment", "/$defs/source/properties/sql/properties/query"),
}
# Python-only regex syntax that an ECMAScript engine (editors) reads differently or refuses.
PYTHON_ONLY = re.compile(r"\\[AZzG]|\(\?P|\(\?#|\(\?[aiLmsux]+[:)]|\*\+|\+\+|\?\+")


def _string_schemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (JSON pointer, schema) of every schema that constrains a string."""
    if isinstance(node, dict):
        if "pattern" in node or node.get("type") == "string":
            yield path, node
        elif isinstance(node.get("enum"), list) or isinstance(node.get("const"), str):
            if all(isinstance(v, str) for v in node.get("enum", [node.get("const")])):
                yield path, node
        for key, value in node.items():
            yield from _string_schemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _string_schemas(item, f"{path}/{index}")


def _checked() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for name in SCHEMA_NAMES:
        for path, node in _string_schemas(load_schema(name)):
            if (name, path) not in FREE_TEXT and "not" not in path.split("/"):
                found.append((name, path, node))
    return found


CHECKED = _checked()
IDS = [f"{s}:{p}" for s, p, _ in CHECKED]


def _examples(node: dict[str, Any]) -> list[str]:
    if "pattern" in node:
        return list(node.get("examples", []))
    return list(node.get("enum", [node.get("const")]))


def test_the_walk_finds_every_kind_of_checked_string() -> None:
    patterns = [p for _, p, n in CHECKED if "pattern" in n]
    enums = [p for _, p, n in CHECKED if "enum" in n]
    assert len(patterns) >= 15 and len(enums) >= 5
    assert any(p.endswith("/$defs/name") for p in patterns)
    assert any(p.endswith("/data_center") for p in enums)


@pytest.mark.parametrize(("schema", "path", "node"), CHECKED, ids=IDS)
def test_every_string_key_is_checked_by_a_pattern_or_a_list(
    schema: str, path: str, node: dict[str, Any]
) -> None:
    """A string key that builds a path, address or request needs a pattern (or enum)."""
    assert "pattern" in node or "enum" in node or "const" in node, (
        f"{schema}{path} accepts any string: give it a pattern with examples, "
        "or add it to FREE_TEXT if people alone read it"
    )


@pytest.mark.parametrize(("schema", "path", "node"), CHECKED, ids=IDS)
def test_every_checked_string_refuses_a_value_with_anything_around_it(
    schema: str, path: str, node: dict[str, Any]
) -> None:
    examples = _examples(node)
    assert examples, f"{schema}{path}: a pattern needs `examples` (editors show them; tested here)"
    validator = Draft202012Validator(node)
    for example in examples:
        assert validator.is_valid(example), f"{schema}{path}: example {example!r} is refused"
        for label, mutate in MUTATIONS.items():
            value = mutate(example)
            assert not validator.is_valid(value), f"{schema}{path}: {label} accepted: {value!r}"


@pytest.mark.parametrize(
    ("schema", "path", "node"),
    [c for c in CHECKED if "pattern" in c[2]],
    ids=[f"{s}:{p}" for s, p, n in CHECKED if "pattern" in n],
)
def test_every_pattern_means_the_same_in_editors(
    schema: str, path: str, node: dict[str, Any]
) -> None:
    """Patterns are anchored at both ends and use no Python-only syntax."""
    pattern = node["pattern"]
    assert pattern.startswith("^") and pattern.endswith("$(?!\\n)"), f"{schema}{path}: {pattern}"
    assert not PYTHON_ONLY.search(pattern), f"{schema}{path}: Python-only syntax in {pattern}"


def test_free_text_keys_exist() -> None:
    """FREE_TEXT names real keys, so a renamed key cannot leave an unchecked string behind."""
    every = {(n, path) for n in SCHEMA_NAMES for path, _ in _string_schemas(load_schema(n))}
    assert FREE_TEXT <= every
