"""The rules a member must follow, once as SQL for the engine and once as Python for reports.

The engine applies the SQL form to every row (fast, no line numbers); when it finds bad
rows, the Python form walks the source again to say which lines and why. Both forms
live here, side by side, so they cannot drift apart unnoticed (tests run both on the
same values).

Each source format has one declared cell type (segops.engine.cells): CSV cells are text,
NDJSON and inline cells are JSON values, Parquet cells have their column's type. An
identifier must be a string; a whole number is accepted only where the manifest says so
(`integers: true`), any number only for a MoEngage attribute of type double. Then the
text must pass the rule of its kind, a whitelist (see `TextRule` and segops.engine.charset).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass

from segops.engine import cells, charset
from segops.model import (
    HASH_FORMATS,
    MAX_IDENTIFIER_LENGTH,
    Identifier,
    IdentifierKind,
    KeyEncoding,
)

_UPPER_HEX = "ABCDEF"
_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?"
# A MoEngage member file is one unquoted CSV column: these would split or quote a value, and
# '#' is the reference's own example of a forbidden special character.
MOENGAGE_FORBIDDEN = ',"#'


@dataclass(frozen=True, slots=True)
class TextRule:
    """What the text of an identifier must look like: a whole-match pattern and a length."""

    pattern: str  # RE2 (SQL), matched against the whole value
    python_pattern: str  # the same rule for Python `re`
    what: str  # the whole predicate for messages: "is not ...", "must hold only ..."
    max_length: int = MAX_IDENTIFIER_LENGTH
    fixed: bool = False  # a fixed-length rule (a hash format): the pattern says the length

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compile(self.python_pattern)

    def sql(self, value: str) -> str:
        """Return a SQL condition that is true when text `value` follows the rule."""
        return (
            f"length({value}) BETWEEN 1 AND {self.max_length} "
            f"AND regexp_full_match({value}, '{self.pattern}')"
        )

    def problem(self, value: str) -> str | None:
        """Return what is wrong with `value`, or None when it follows the rule."""
        if len(value) > self.max_length and not self.fixed:
            return f"is longer than {self.max_length} characters"
        if len(value) <= self.max_length and self.compiled.fullmatch(value):
            return None
        detail = "" if self.fixed else _first_bad_character(value, self.compiled)
        return self.what + (f"; it contains {detail}" if detail else "")


@functools.cache
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def rule(identifier: Identifier) -> TextRule:
    """Return the text rule of the identifier's kind (hash formats are checked by `key_sql`)."""
    return _rule(identifier.kind, identifier.format, identifier.attribute_type)


@functools.cache
def _rule(kind: IdentifierKind, fmt: str | None, attribute_type: str | None) -> TextRule:
    if fmt is not None:
        n = HASH_FORMATS[fmt]
        hexes = f"[0-9a-f]{{{n}}}"
        return TextRule(hexes, hexes, f"is not {n} lowercase hex characters ({fmt})", n, True)
    if kind is IdentifierKind.EMAIL_HASH:
        hexes = "[0-9a-f]{32,128}"
        return TextRule(hexes, hexes, "is not 32 to 128 lowercase hex characters (a hash)", 128)
    if kind is IdentifierKind.USER_AGENT_ID:
        ascii_ = "[!-~]+"
        return TextRule(ascii_, ascii_, "must hold only printable ASCII characters, no spaces")
    if kind is IdentifierKind.ATTRIBUTE and attribute_type == "double":
        return TextRule(_NUMBER, _NUMBER, "is not a decimal number such as 42 or -1.5")
    visible = "must hold only letters, marks, digits, punctuation or symbols (no spaces, "
    if kind is IdentifierKind.ATTRIBUTE:
        what = visible + "invisible characters, ',', '\"' or '#': MoEngage files are one column)"
        exclude = MOENGAGE_FORBIDDEN
        return TextRule(charset.sql_class(exclude) + "+", charset.python_class(exclude) + "+", what)
    what = visible + "control or invisible characters)"
    return TextRule(charset.sql_class() + "+", charset.python_class() + "+", what)


def accepted(identifier: Identifier) -> frozenset[str]:
    """Return the cell kinds an identifier may be read from (see segops.engine.cells)."""
    if identifier.kind is IdentifierKind.ATTRIBUTE and identifier.attribute_type == "double":
        return frozenset({cells.STRING, cells.INTEGER, cells.NUMBER})
    if identifier.integers:
        return frozenset({cells.STRING, cells.INTEGER})
    return frozenset({cells.STRING})


def key_sql(identifier: Identifier, value: str, optimistic: bool = False) -> str:
    """Return SQL giving the member key of text expression `value`, or NULL when it is invalid.

    Hash formats become raw bytes (`unhex`): half the size and fixed width, which makes the
    join cheaper. The checks are ordered cheapest first; RE2 is avoided on the hash path.
    `optimistic` drops the `try` around `unhex` (a third of the key's cost): a value with a
    character that is not hex then fails the whole query instead of giving NULL, and the
    caller runs the query again without it. A query that succeeds gives the same keys.
    """
    if identifier.encoding is KeyEncoding.HEX:
        assert identifier.format is not None
        length = HASH_FORMATS[identifier.format]
        no_upper = " OR ".join(f"contains({value}, '{c}')" for c in _UPPER_HEX)
        decoded = f"unhex({value})" if optimistic else f"try(unhex({value}))"
        return f"CASE WHEN strlen({value}) = {length} AND NOT ({no_upper}) THEN {decoded} END"
    return f"CASE WHEN {rule(identifier).sql(value)} THEN {value} END"


def key_text_sql(encoding: KeyEncoding, key: str) -> str:
    """Return SQL turning a stored key back into the identifier text that is sent."""
    return f"lower(hex({key}))" if encoding is KeyEncoding.HEX else key


def identifier_problem(identifier: Identifier, value: object) -> str | None:
    """Return why cell `value` is not a valid identifier, or None when it is."""
    name = f"{_name(identifier)} in column '{identifier.column}'"
    text, kind = cells.as_text(value, accepted(identifier))
    if text is None and kind != cells.NULL:
        return f"{name} is {cells.describe(kind)}, not text: {_type_hint(identifier, kind)}"
    if not text:
        return f"empty {_name(identifier)} in column '{identifier.column}'"
    problem = rule(identifier).problem(text)
    return None if problem is None else f"{name} {problem}"


def data_bag_sql(value: str, column_type: str) -> str | None:
    """Return SQL giving compact JSON object text for a data bag cell, NULL when invalid.

    None when no cell of `column_type` can be a data bag (the column is refused as a whole).
    """
    if column_type == cells.TEXT:
        return _bag_text_sql(value)
    if column_type == cells.JSON:
        text = f"({value}->>'$')"
        return (
            f"CASE json_type({value}) WHEN 'OBJECT' THEN json({value})::VARCHAR "
            f"WHEN 'VARCHAR' THEN {_bag_text_sql(text)} END"
        )
    if column_type.startswith(("STRUCT", "MAP")):
        return (
            f"CASE WHEN json_type(to_json({value})) = 'OBJECT' THEN to_json({value})::VARCHAR END"
        )
    return None


def _bag_text_sql(value: str) -> str:
    # Nested CASE: the cast to JSON runs only on rows that json_valid accepted.
    return (
        f"CASE WHEN json_valid({value}) THEN CASE WHEN json_type({value}::JSON) = 'OBJECT' "
        f"THEN json({value})::VARCHAR END END"
    )


def data_bag_problem(column: str, value: object) -> str | None:
    """Return why cell `value` is not a JSON object, or None when it is (or is absent)."""
    if value is None or isinstance(value, dict):
        return None
    if not isinstance(value, str):
        kind = cells.kind_of(value)
        return f"data_bag in column '{column}' is {cells.describe(kind)}, not a JSON object"
    try:
        parsed = json.loads(value)
    except ValueError:
        return f"data_bag in column '{column}' is not valid JSON"
    if not isinstance(parsed, dict):
        return f"data_bag in column '{column}' is not a JSON object"
    return None


def expiration_ts_sql(value: str, column_type: str) -> str | None:
    """Return SQL giving a non-negative epoch-milliseconds BIGINT, NULL when invalid.

    None when no cell of `column_type` can be a timestamp (the column is refused as a whole).
    """
    text = cells.text_sql(value, column_type, frozenset({cells.STRING, cells.INTEGER}))
    if text is None:
        return None
    trimmed = f"trim({text})"
    return (
        f"CASE WHEN regexp_full_match({trimmed}, '[0-9]{{1,18}}') "
        f"THEN CAST({trimmed} AS BIGINT) END"
    )


def expiration_ts_problem(column: str, value: object) -> str | None:
    """Return why cell `value` is not a non-negative integer, or None when it is (or absent)."""
    text, kind = cells.as_text(value, frozenset({cells.STRING, cells.INTEGER}))
    if kind == cells.NULL:
        return None
    if text is None or not re.fullmatch("[0-9]{1,18}", text.strip(" ")):
        return (
            f"expiration_ts in column '{column}' is not a non-negative integer (epoch milliseconds)"
        )
    return None


def _name(identifier: Identifier) -> str:
    if identifier.kind is IdentifierKind.ATTRIBUTE:
        return f"attribute {identifier.attribute_name or identifier.column}"
    return identifier.kind.value


def _type_hint(identifier: Identifier, kind: str) -> str:
    where = "attribute" if identifier.kind is IdentifierKind.ATTRIBUTE else "identifier"
    if kind == cells.INTEGER and may_take_integers(identifier):
        return (
            f"write it as a string in the source, or set `integers: true` on the destination's "
            f"{where} to accept whole numbers"
        )
    return "write it as a string in the source"


def may_take_integers(identifier: Identifier) -> bool:
    """Return whether the manifest may let this identifier be read from whole numbers."""
    kinds = (IdentifierKind.USER_ACCOUNT_ID, IdentifierKind.ATTRIBUTE)
    return identifier.kind in kinds and identifier.format is None


def _first_bad_character(value: str, pattern: re.Pattern[str]) -> str:
    """Name the first character the rule refuses: its code point and name, never the value."""
    for char in value:
        if not pattern.fullmatch(char):
            name = unicodedata.name(char, "")
            category = unicodedata.category(char)
            label = f" {name}" if name else ""
            return f"U+{ord(char):04X}{label} ({_CATEGORIES.get(category, category)})"
    return ""


_CATEGORIES: dict[str, str] = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Cs": "half of a surrogate pair",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zs": "a space",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
