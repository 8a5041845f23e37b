"""The rules a member must follow, once as SQL for the engine and once as Python for reports.

The engine applies the SQL form to every row (fast, no line numbers); when it finds bad
rows, the Python form walks the source again to say which lines and why. Both forms
live here, side by side, so they cannot drift apart unnoticed (tests run both on the
same rows).
"""

from __future__ import annotations

import json
import re

from segops.model import HASH_FORMATS, MAX_IDENTIFIER_LENGTH, Identifier, KeyEncoding

# Whitespace (ASCII and Unicode) and control characters never belong in an identifier.
_BAD_CHARS = (
    r"[\s\x00-\x1f\x7f\x{85}\x{a0}\x{1680}\x{2000}-\x{200b}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}]"
)
_BAD_CHARS_PY = re.compile(
    "[\\s\x00-\x1f\x7f\x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
)
_UPPER_HEX = "ABCDEF"


def key_sql(identifier: Identifier, value: str) -> str:
    """Return SQL giving the member key of text expression `value`, or NULL when it is invalid.

    Hash formats become raw bytes (`unhex`): half the size and fixed width, which makes the
    join cheaper. The checks are ordered cheapest first; RE2 is avoided on the hash path.
    """
    if identifier.encoding is KeyEncoding.HEX:
        assert identifier.format is not None
        length = HASH_FORMATS[identifier.format]
        no_upper = " OR ".join(f"contains({value}, '{c}')" for c in _UPPER_HEX)
        return (
            f"CASE WHEN strlen({value}) = {length} AND NOT ({no_upper}) "
            f"THEN try(unhex({value})) END"
        )
    return (
        f"CASE WHEN length({value}) BETWEEN 1 AND {MAX_IDENTIFIER_LENGTH} "
        f"AND NOT regexp_matches({value}, '{_BAD_CHARS}') THEN {value} END"
    )


def key_text_sql(encoding: KeyEncoding, key: str) -> str:
    """Return SQL turning a stored key back into the identifier text that is sent."""
    return f"lower(hex({key}))" if encoding is KeyEncoding.HEX else key


def data_bag_sql(value: str, is_text: bool) -> str:
    """Return SQL giving compact JSON object text for a data bag value, NULL when invalid."""
    if not is_text:
        return (
            f"CASE WHEN json_type(to_json({value})) = 'OBJECT' THEN to_json({value})::VARCHAR END"
        )
    return (
        f"CASE WHEN json_valid({value}) AND json_type({value}::JSON) = 'OBJECT' "
        f"THEN json({value})::VARCHAR END"
    )


def expiration_ts_sql(value: str) -> str:
    """Return SQL giving a non-negative epoch-milliseconds BIGINT, NULL when invalid."""
    text = f"trim(CAST({value} AS VARCHAR))"
    return f"CASE WHEN regexp_full_match({text}, '[0-9]{{1,18}}') THEN CAST({text} AS BIGINT) END"


def identifier_problem(identifier: Identifier, value: str | None) -> str | None:
    """Return why `value` is not a valid identifier, or None when it is."""
    if value is None or value == "":
        return f"empty {identifier.kind.value} in column '{identifier.column}'"
    if identifier.format is not None:
        length = HASH_FORMATS[identifier.format]
        if not re.fullmatch(f"[0-9a-f]{{{length}}}", value):
            return (
                f"{identifier.kind.value} in column '{identifier.column}' is not {length} "
                f"lowercase hex characters ({identifier.format})"
            )
        return None
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return (
            f"{identifier.kind.value} in column '{identifier.column}' is longer than "
            f"{MAX_IDENTIFIER_LENGTH} characters"
        )
    if _BAD_CHARS_PY.search(value):
        return (
            f"{identifier.kind.value} in column '{identifier.column}' contains whitespace "
            "or a control character"
        )
    return None


def data_bag_problem(column: str, value: str | None) -> str | None:
    """Return why `value` is not a JSON object text, or None when it is (or is absent)."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return f"data_bag in column '{column}' is not valid JSON"
    if not isinstance(parsed, dict):
        return f"data_bag in column '{column}' is not a JSON object"
    return None


def expiration_ts_problem(column: str, value: str | None) -> str | None:
    """Return why `value` is not a non-negative integer, or None when it is (or is absent)."""
    if value is None:
        return None
    if not re.fullmatch("[0-9]{1,18}", value.strip()):
        return (
            f"expiration_ts in column '{column}' is not a non-negative integer (epoch milliseconds)"
        )
    return None
