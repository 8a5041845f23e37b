"""The import direction of segops' packages: data flows one way, and so do imports.

    config -> engine -> planning -> render | apply -> destinations | state

A module may import the shared base (errors, model, _fs, _text, version, observe), its own
stage, and the stages after it; importing an earlier stage, or a sibling on the same step
(render and apply, destinations and state), is an upward import and fails here. Only the
shell on top (segops/__init__, cli, operations, crash, lifecycle, and the terminal side in
segops/ui/) may import everything. Every import counts: module level, inside functions, and
under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "segops"
BASE = (
    "segops.errors",
    "segops.model",
    "segops._fs",
    "segops._text",
    "segops.version",
    "segops.observe",
)
SHELL = (
    "segops",
    "segops.__main__",
    "segops.cli",
    "segops.crash",
    "segops.operations",
    "segops.lifecycle",
)
SHELL_PACKAGES = ("segops.ui.",)  # the terminal side of the shell: progress, logs, events


def is_shell(module: str) -> bool:
    return module in SHELL or module.startswith(SHELL_PACKAGES) or module == "segops.ui"


# Each step of the flow; stages on one step are siblings and do not import each other.
FLOW: tuple[tuple[str, ...], ...] = (
    ("config",),
    ("engine",),
    ("planning",),
    ("render", "apply"),
    ("destinations", "state"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> str | None:
    """Return the stage a segops module belongs to; None for the base and the shell."""
    if is_shell(module) or module.startswith(BASE):
        return None
    stage = module.split(".")[1]
    assert any(stage in step for step in FLOW), f"{module} is in no stage: add it to FLOW"
    return stage


def step_of(stage: str) -> int:
    return next(i for i, step in enumerate(FLOW) if stage in step)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line, imported segops module) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = here.split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:  # `from segops.x import module` imports that module
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if is_module(sub) else base


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def upward_imports(path: Path) -> list[str]:
    here = module_name(path)
    stage = stage_of(here)
    found = []
    for line, target in imports(path):
        if target != "segops" and not target.startswith("segops."):
            continue
        if is_shell(target) and not is_shell(here):
            found.append(f"{here}:{line} imports {target}, the command shell")
            continue
        other = stage_of(target)
        if stage is None or other is None or other == stage:
            continue
        if step_of(other) <= step_of(stage):
            kind = "a sibling stage" if step_of(other) == step_of(stage) else "an earlier stage"
            found.append(f"{here}:{line} ({stage}) imports {target} ({other}), {kind}")
        continue
    if stage is None and not is_shell(here):  # the base imports only the base
        for line, target in imports(path):
            if target.startswith("segops.") and not target.startswith(BASE):
                if stage_of(target) is not None or is_shell(target):
                    found.append(f"{here}:{line} (shared base) imports {target}")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_upward(path: Path) -> None:
    assert upward_imports(path) == []


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    """A planted upward import (destinations importing planning) is reported."""
    planted = PACKAGE / "destinations" / "_planted_upward_import.py"
    planted.write_text("from segops.planning import planner\nimport segops.apply.loop\n")
    try:
        found = upward_imports(planted)
    finally:
        planted.unlink()
    assert len(found) == 2
    assert "imports segops.planning.planner (planning), an earlier stage" in found[0]
    assert "imports segops.apply.loop (apply), an earlier stage" in found[1]


def test_siblings_do_not_import_each_other(tmp_path: Path) -> None:
    planted = PACKAGE / "render" / "_planted_sibling_import.py"
    planted.write_text("def f():\n    from segops.apply import journal\n")
    try:
        found = upward_imports(planted)
    finally:
        planted.unlink()
    assert found and "a sibling stage" in found[0]


def test_every_stage_is_a_package() -> None:
    for step in FLOW:
        for stage in step:
            assert (PACKAGE / stage / "__init__.py").is_file(), stage


def test_a_stage_may_not_import_the_terminal_side() -> None:
    planted = PACKAGE / "engine" / "_planted_ui_import.py"
    planted.write_text("from segops.ui import progress\n")
    try:
        found = upward_imports(planted)
    finally:
        planted.unlink()
    assert found and "the command shell" in found[0]
