"""The platform examples of docs/architecture.md run as written."""

from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

from segops.destinations.platform import PlatformSpec
from segops.destinations.registry import BUILTIN, platform_spec
from segops.model import IdentifierKind

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def block(after: str, language: str) -> str:
    """Return the first fenced `language` block whose first line is `after`."""
    text = DOC.read_text()
    pattern = rf"```{language}\n({re.escape(after)}\n.*?)```"
    found = re.search(pattern, text, re.S)
    assert found, f"no {language} block starting with {after!r} in {DOC.name}"
    return found.group(1)


def test_the_plugin_example_is_a_working_platform() -> None:
    code = block("# segops_acme/__init__.py", "python")
    module = types.ModuleType("segops_acme")
    exec(compile(code, "segops_acme/__init__.py", "exec"), module.__dict__)
    spec = module.PLATFORM
    assert isinstance(spec, PlatformSpec) and spec.name == "acme"
    parts = spec.destination({"connection": "acme-prod", "list": "vip", "column": "uid"})
    assert parts.identifier.kind is IdentifierKind.ATTRIBUTE
    assert parts.identifier.column == "uid"
    assert dict(parts.settings) == {"connection": "acme-prod", "list": "vip"}
    assert spec.segment_keys(dict(parts.settings)) == [("acme", "connection=acme-prod", "list=vip")]


def test_the_entry_point_example_names_the_group() -> None:
    data = tomllib.loads(block("# pyproject.toml of the package segops-acme", "toml"))
    assert data["project"]["entry-points"]["segops.destinations"] == {
        "acme": "segops_acme:PLATFORM"
    }


def test_the_registry_example_matches_the_registry() -> None:
    code = block("# segops/destinations/registry.py", "python")
    listed = dict(re.findall(r'"(\w+)": "([\w.:]+)"', code))
    assert {k: v for k, v in listed.items() if k != "acme"} == dict(BUILTIN)
    for name in BUILTIN:
        assert platform_spec(name) is not None
    assert "segops_acme" not in sys.modules
