"""A destination's desired members as SQL over its source, and the same rules in Python.

The SQL form turns each row's typed cells into the member key, the attributes and a `bad`
flag (every row, no line numbers); `row_problem` says in words why one row is bad, for the
error report. A column whose type can never hold what it is read for (a BOOLEAN identifier
column, a LIST data bag) is refused as a whole by `column_problems`, before any row is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from segops.engine import cells, identifiers
from segops.engine.sources.sql import quote_ident
from segops.errors import Problem
from segops.model import Destination, IdentifierKind
from segops.version import version

_ID, _BAG, _TS = "_segops_id", "_segops_bag", "_segops_ts"
_TS_ACCEPT = frozenset({cells.STRING, cells.INTEGER})


def roles(destination: Destination) -> list[tuple[str, str]]:
    """Return (role, column) for every column the destination reads."""
    found = [("identifier", destination.identifier.column)]
    if destination.data_bag_column:
        found.append(("data_bag", destination.data_bag_column))
    if destination.expiration_ts_column:
        found.append(("expiration_ts", destination.expiration_ts_column))
    return found


def reading_digest(destination: Destination) -> str:
    """Return the sha256 of everything that decides which members a source's bytes give.

    Two destinations with the same digest get the same desired members from the same bytes;
    segops' version is in it, so a release that changes a rule never trusts an older read.
    """
    source, ident = destination.source, destination.identifier
    fields = {
        "segops": version(),
        "source": [source.kind.value, source.path, source.delimiter, source.on_bad_rows.value],
        "identifier": [
            ident.kind.value,
            ident.column,
            ident.format,
            ident.attribute_type,
            ident.integers,
        ],
        "attributes": [destination.data_bag_column, destination.expiration_ts_column],
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def column_problems(
    destination: Destination, types: Mapping[str, str], source_name: str
) -> list[Problem]:
    """Return a problem for each column that is missing or whose type can never be valid."""
    problems = []
    for role, column in roles(destination):
        if column not in types:
            listed = ", ".join(sorted(types)) or "none"
            message = f"{role} column '{column}' is not in {source_name} (columns: {listed})"
        elif _cell_sql(destination, role, quote_ident(column), types[column]) is None:
            kind = cells.describe(cells.column_kind(types[column]))
            message = (
                f"{role} column '{column}' of {source_name} holds {kind} ({types[column]}): "
                f"{_expected(destination, role)}"
            )
        else:
            continue
        where = f"destination {destination.name}"
        problems.append(Problem(destination.manifest, message, destination.line, where))
    return problems


def desired_sql(
    destination: Destination, relation: str, types: Mapping[str, str], optimistic: bool = False
) -> str:
    """Return SQL for the desired members: key (NULL when invalid), bad flag, attributes.

    The columns must have passed `column_problems`; `optimistic`: see identifiers.key_sql.
    """
    ident = destination.identifier
    cell = quote_ident(ident.column)
    text = _cell_sql(destination, "identifier", cell, types[ident.column])
    inner = [f"{text} AS {_ID}"]
    middle = [f"{identifiers.key_sql(ident, _ID, optimistic)} AS k"]
    bad = ["k IS NULL"]
    attributes = (
        ("data_bag", _BAG, destination.data_bag_column),
        ("expiration_ts", _TS, destination.expiration_ts_column),
    )
    for role, alias, column in attributes:
        if not column:
            continue
        inner.append(f"{quote_ident(column)} AS {alias}")
        middle += [f"{_cell_sql(destination, role, alias, types[column])} AS {role}"]
        middle += [f"{alias} IS NOT NULL AS {alias}_given"]
        bad.append(f"({alias}_given AND {role} IS NULL)")
    attrs = "".join(f", {a}" for a in destination.attributes)
    return (
        f"SELECT k, ({' OR '.join(bad)}) AS bad{attrs} FROM "
        f"(SELECT {', '.join(middle)} FROM (SELECT {', '.join(inner)} FROM {relation}))"
    )


def row_problem(destination: Destination, row: Mapping[str, object]) -> str | None:
    """Return why one source row is not a valid member, or None when it is one."""
    ident = destination.identifier
    reason = identifiers.identifier_problem(ident, row.get(ident.column))
    if reason is None and destination.data_bag_column:
        column = destination.data_bag_column
        reason = identifiers.data_bag_problem(column, row.get(column))
    if reason is None and destination.expiration_ts_column:
        column = destination.expiration_ts_column
        reason = identifiers.expiration_ts_problem(column, row.get(column))
    return reason


def _cell_sql(destination: Destination, role: str, cell: str, column_type: str) -> str | None:
    if role == "identifier":
        return cells.text_sql(cell, column_type, identifiers.accepted(destination.identifier))
    if role == "data_bag":
        return identifiers.data_bag_sql(cell, column_type)
    return identifiers.expiration_ts_sql(cell, column_type)


def _expected(destination: Destination, role: str) -> str:
    if role == "data_bag":
        return "a data bag is a JSON object: a struct or map column, or text holding JSON"
    if role == "expiration_ts":
        return "expiration_ts is epoch milliseconds: an integer column, or text of digits"
    ident = destination.identifier
    if ident.kind is IdentifierKind.ATTRIBUTE and ident.attribute_type == "double":
        return "an attribute of type double is read from a number or text column"
    if cells.INTEGER in identifiers.accepted(ident):
        return "identifiers are read from a text or integer column"
    hint = ""
    if identifiers.may_take_integers(ident):
        where = "attribute" if ident.kind is IdentifierKind.ATTRIBUTE else "identifier"
        hint = f" (or an integer column with `integers: true` on the {where})"
    return f"identifiers are read from a text column{hint}"
