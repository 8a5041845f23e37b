"""Source cells: one declared type per format, and how a cell becomes text (SQL and Python).

CSV cells are text (TEXT); NDJSON and inline cells are JSON values (JSON), so a string, a
number and an object stay apart instead of being typed by a reader's guess; Parquet cells
have their column's DuckDB type. A cell has a kind (STRING, INTEGER, NUMBER, ...); a caller
says which kinds it accepts, and any other kind is refused, never converted silently.
"""

from __future__ import annotations

import decimal
from collections.abc import Collection

TEXT = "VARCHAR"  # the declared type of every CSV column
JSON = "JSON"  # the declared type of every NDJSON and inline column

STRING, INTEGER, NUMBER = "string", "integer", "number"
BOOLEAN, OBJECT, LIST, NULL, OTHER = "boolean", "object", "list", "null", "other"

# Whole numbers that fit 64 bits: DuckDB's JSON reader types a larger one as DOUBLE, so the
# Python side calls it a NUMBER too.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
_NUMBER_PREFIXES = ("FLOAT", "DOUBLE", "DECIMAL", "HUGEINT", "UHUGEINT")
_DESCRIBED = {
    STRING: "text",
    INTEGER: "a whole number",
    NUMBER: "a number",
    BOOLEAN: "true/false",
    OBJECT: "an object",
    LIST: "a list",
    NULL: "empty",
    OTHER: "a value of another type",
}


def describe(kind: str) -> str:
    """Return a cell kind in words, for messages."""
    return _DESCRIBED.get(kind, kind)


def column_kind(column_type: str) -> str:
    """Return the kind of every cell of a typed (Parquet) column; JSON columns vary per cell."""
    if column_type == TEXT:
        return STRING
    if column_type in INTEGER_TYPES:
        return INTEGER
    if column_type.startswith(_NUMBER_PREFIXES):
        return NUMBER
    if column_type == "BOOLEAN":
        return BOOLEAN
    if column_type.startswith(("STRUCT", "MAP")):
        return OBJECT
    if column_type.endswith("]"):
        return LIST
    return OTHER


def text_sql(value: str, column_type: str, accept: Collection[str]) -> str | None:
    """Return SQL giving the text of a cell of an accepted kind, NULL for any other cell.

    None when no cell of `column_type` can be accepted: the column is refused as a whole.
    """
    if column_type == JSON:
        whens = []
        if STRING in accept:
            whens.append(f"WHEN 'VARCHAR' THEN {value}->>'$'")
        if INTEGER in accept:
            whens.append(f"WHEN 'BIGINT' THEN {value}->>'$' WHEN 'UBIGINT' THEN {value}->>'$'")
        if NUMBER in accept:
            whens.append(f"WHEN 'DOUBLE' THEN CAST(TRY_CAST({value} AS DOUBLE) AS VARCHAR)")
        return f"CASE json_type({value}) {' '.join(whens)} END" if whens else None
    kind = column_kind(column_type)
    if kind not in accept:
        return None
    return value if kind == STRING else f"CAST({value} AS VARCHAR)"


def kind_of(value: object) -> str:
    """Return the kind of a cell as the Python readers give it (JSON, YAML or Parquet values)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, str):
        return STRING
    if isinstance(value, int):
        return INTEGER if _INT_MIN <= value <= _INT_MAX else NUMBER
    if isinstance(value, float | decimal.Decimal):
        return NUMBER
    if isinstance(value, dict):
        return OBJECT
    if isinstance(value, list | tuple):
        return LIST
    return OTHER


def as_text(value: object, accept: Collection[str]) -> tuple[str | None, str]:
    """Return (text, kind) of a cell: text is None when the cell is empty or not accepted."""
    kind = kind_of(value)
    if kind == NULL or kind not in accept:
        return None, kind
    if isinstance(value, str):
        return value, kind
    if isinstance(value, float):
        return repr(value), kind  # "inf" and "nan" fail the number rule, as in SQL
    return str(value), kind
