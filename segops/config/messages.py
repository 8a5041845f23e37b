"""Readable messages for jsonschema errors: say what to write, not how the schema failed.

A schema may carry its own message in an `errorMessage` keyword (which VS Code and the
YAML language server show too); otherwise the message is built from the failing keyword.
The offending value is quoted (as JSON, so a trailing newline shows as `\\n`): settings and
names are not personal data. Member values (`spec.source.members`) are never quoted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping

from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]

_TYPE_NAMES: Mapping[str, str] = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_VALUE_KINDS: Mapping[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}
# Keywords that judge a value (not a key's presence): their message ends with the value.
_VALUE_KEYWORDS = frozenset(
    {"pattern", "type", "enum", "const", "minLength", "maxLength", "minimum", "maximum"}
    | {"exclusiveMinimum", "exclusiveMaximum"}
)
_MEMBERS = ("spec", "source", "members")
_USERINFO = re.compile(r"(://)[^/?#@]*@")


def message_for(error: ValidationError) -> str:
    """Return the message a person sees for `error` (its location is reported apart)."""
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if custom:
        about_key = "propertyNames" in error.schema_path  # the key is quoted by the caller
        if error.validator in _VALUE_KEYWORDS and not about_key:
            return f"{custom}; got {_describe(error.instance, error)}"
        return str(custom)
    build = _BUILDERS.get(error.validator)
    message = build(error) if build else None
    return message or str(error.message)


def _required(error: ValidationError) -> str:
    missing = [key for key in error.validator_value if key not in error.instance]
    plural = "s" if len(missing) > 1 else ""
    return f"missing required key{plural} " + ", ".join(repr(key) for key in missing)


def _one_of(error: ValidationError) -> str:
    """Say "exactly one of a, b" for a oneOf whose branches each require one key."""
    branches = error.validator_value
    keys = [b["required"][0] for b in branches if list(b) == ["required"]]
    if len(keys) != len(branches) or not isinstance(error.instance, dict):
        return str(best_match(error.context).message) if error.context else ""
    found = ", ".join(key for key in keys if key in error.instance) or "none"
    return f"exactly one of {', '.join(keys)}; found {found}"


def _type(error: ValidationError) -> str:
    value = error.validator_value
    expected = " or ".join(_TYPE_NAMES[t] for t in ([value] if isinstance(value, str) else value))
    if _non_finite(error.instance) and "number" in expected:
        expected = expected.replace("a number", "a finite number")
    return f"expected {expected}, got {_describe(error.instance, error)}"


def _enum(error: ValidationError) -> str:
    choices = ", ".join(map(_short, error.validator_value))
    return f"must be one of {choices}; got {_describe(error.instance, error)}"


def _const(error: ValidationError) -> str:
    return f"must be {_short(error.validator_value)}; got {_describe(error.instance, error)}"


def _bound(error: ValidationError) -> str:
    words = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "more than",
        "exclusiveMaximum": "less than",
    }[error.validator]
    return f"must be {words} {error.validator_value:,}; got {_describe(error.instance, error)}"


def _not_empty(error: ValidationError) -> str:
    return "must not be empty" if error.validator_value == 1 else ""


_BUILDERS: Mapping[str, Callable[[ValidationError], str]] = {
    "required": _required,
    "oneOf": _one_of,
    "type": _type,
    "enum": _enum,
    "const": _const,
    "minItems": _not_empty,
    "minProperties": _not_empty,
    "minLength": _not_empty,
    "minimum": _bound,
    "maximum": _bound,
    "exclusiveMinimum": _bound,
    "exclusiveMaximum": _bound,
}


def _describe(value: object, error: ValidationError | None = None) -> str:
    """Return what `value` is; its text too, unless it is member data (personal data)."""
    kind = _VALUE_KINDS.get(type(value), type(value).__name__)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if error is not None and tuple(error.absolute_path)[: len(_MEMBERS)] == _MEMBERS:
        return f"a {kind} member value"
    if _non_finite(value):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[str(value)]  # as YAML writes it
    if isinstance(value, str):  # a URL's user:password@ is a secret, even where it is refused
        value = _USERINFO.sub(r"\1***@", value)
    return f"{_short(value)} ({kind})"


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
