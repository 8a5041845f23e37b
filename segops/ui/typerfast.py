"""Coerce plain option values (str, Path, int, bool, enums, lists of them) without pydantic.

typer (0.29) coerces every non-flag value through a pydantic TypeAdapter, and importing
pydantic costs about 60 ms: a third of what `segops version` may take. Values of these
plain types need no schema: this gives them a direct conversion and leaves every other
annotation (enums, files, numbers with bounds, custom parsers) to typer. typer's own
hook is private API: when it moves, nothing is patched and start-up is only slower
(tests/cli/test_startup.py then fails, which says so).
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PLAIN = (str, Path, int, bool)
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def install() -> bool:
    """Make typer coerce plain values directly; return False when its hook is not there."""
    try:
        from typer import core
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam, TypeDescriptor
    except ImportError:  # pragma: no cover - another typer
        return False
    original = getattr(core, "build_runtime_param", None)
    if original is None or getattr(original, "_segops", False):
        return original is not None

    @dataclass(frozen=True)
    class Plain(RuntimeParam):
        kind: type = str
        many: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.many:
                return [self._one(v, param, ctx) for v in value]
            return self._one(value, param, ctx)

        def _one(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.kind is bool and not isinstance(value, bool):
                text = str(value).strip().lower()
                if text not in _TRUE | _FALSE:
                    raise BadParameter(f"{value!r} is not a boolean", ctx, param)
                return text in _TRUE
            if self.kind is int and not isinstance(value, int):
                try:
                    return int(value)
                except (TypeError, ValueError):
                    raise BadParameter(f"{value!r} is not a whole number", ctx, param) from None
            if issubclass(self.kind, enum.Enum) and not isinstance(value, self.kind):
                try:
                    return self.kind(value)
                except ValueError:
                    choices = ", ".join(repr(m.value) for m in self.kind)
                    raise BadParameter(f"{value!r} is not one of {choices}.", ctx, param) from None
            return self.kind(value)

    def build(descriptor: TypeDescriptor) -> Any:
        plain = _plain(descriptor.annotation)
        info = descriptor.parameter_info
        if plain is None or descriptor.file_annotation is not None or info.parser is not None:
            return original(descriptor)
        if getattr(info, "min", None) is not None or getattr(info, "max", None) is not None:
            return original(descriptor)
        kind, many = plain
        return Plain(info, descriptor.annotation, kind, many)

    build._segops = True  # type: ignore[attr-defined]
    core.build_runtime_param = build  # type: ignore[attr-defined]
    return True


def _plain(annotation: Any) -> tuple[type, bool] | None:
    """Return (type, is a list) for str, Path, int, bool, their lists, optional or not."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return _plain(rest[0]) if len(rest) == 1 else None
    if typing.get_origin(annotation) is list and len(args) == 1 and args[0] in _PLAIN:
        return args[0], True
    if annotation in _PLAIN or _string_enum(annotation):
        return annotation, False
    return None


def _string_enum(annotation: Any) -> bool:
    """Whether `annotation` is an enum of string values (typer offers them as choices)."""
    return (
        isinstance(annotation, type)
        and issubclass(annotation, enum.Enum)
        and all(isinstance(member.value, str) for member in annotation)
    )
