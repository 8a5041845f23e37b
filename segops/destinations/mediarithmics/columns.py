"""mediarithmics command lines built a column at a time, from Arrow record batches.

The same lines as `commands.ndjson_lines` and `commands.csv_rows`, byte for byte (a test
holds them equal over keys and data bags that need escaping or quoting), built by Arrow
compute kernels over a whole batch instead of one Python format per row: the `files` form
of a ten-million-member change is written at disk speed.

Every function takes one run of rows that are all removes or all adds/updates (`removing`);
the caller splits batches into such runs, since removes and adds carry different settings.
JSON string escaping takes the fast path (quotes around the text) when no value holds a
character JSON escapes; otherwise backslashes and quotes are escaped by kernels, and a
batch holding a control character is escaped by the json module's own encoder.
"""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from segops.destinations.mediarithmics import commands as mics
from segops.errors import DestinationError

_CONTROL = r"[\x00-\x1f]"
_JSON_ESCAPED = r'[\x00-\x1f"\\]'  # what JSON escapes in a string
_CSV_QUOTED = r'[,"\r\n]'  # what makes csv.writer (QUOTE_MINIMAL) quote a cell


def ndjson_column(
    target: mics.CommandTarget, rows: Any, *, removing: bool, plain_keys: bool = False
) -> Any:
    """Return one NDJSON command line per row of `rows` (a record batch), each ending in \\n.

    `plain_keys`: no key holds a character JSON escapes (hex hashes), so none is looked for.
    """
    head_delete, head_update, id_head, tail = mics.ndjson_fragments(target)
    keys = _keys(rows)
    key = _quoted(keys) if plain_keys else _json_strings(keys)
    if removing:
        return _joined([head_delete, id_head, key, tail, "}\n"], rows.num_rows)
    ts = _optional(rows.column("expiration_ts"), ',"expiration_ts":', _integers)
    bag = _optional(rows.column("data_bag"), ',"data_bag":', _json_strings)
    return _joined([head_update, ts, id_head, key, tail, bag, "}\n"], rows.num_rows)


def csv_column(
    target: mics.CommandTarget,
    rows: Any,
    columns: tuple[str, ...],
    *,
    removing: bool,
    plain_keys: bool = False,
) -> Any:
    """Return one CSV command line per row of `rows`, in `columns` (see `commands.csv_rows`).

    `plain_keys`: no key holds a character CSV quotes (hex hashes), so none is looked for.

    Raises:
        DestinationError: an UPDATE row has a value whose column is not in `columns`.
    """
    delete_head, delete_tail, update_head, tail = mics.csv_fragments(target, columns)
    key = _keys(rows) if plain_keys else _csv_cells(_keys(rows))
    if removing:
        return _joined([delete_head, key, delete_tail], rows.num_rows)
    with_ts, with_bag = "expiration_ts" in columns, "data_bag" in columns
    ts, bag = rows.column("expiration_ts"), rows.column("data_bag")
    if (ts.null_count < len(ts) and not with_ts) or (bag.null_count < len(bag) and not with_bag):
        raise DestinationError(
            "a row has an expiration_ts or data_bag but the CSV file "
            f"has only the columns {columns}"
        )
    ts_cells = _optional(ts, ",", _integers, empty=",") if with_ts else ""
    bag_cells = _optional(bag, ",", _csv_cells, empty=",") if with_bag else ""
    return _joined([update_head, ts_cells, ",", key, tail, bag_cells, "\n"], rows.num_rows)


def line_bytes(lines: Any) -> memoryview:
    """Return the bytes of a string array of lines, concatenated, without copying them."""
    if lines.null_count:
        raise DestinationError("a command line could not be built (a value is missing)")
    _, offsets, data = lines.buffers()
    if data is None:
        return memoryview(b"")
    starts = memoryview(offsets).cast("i")
    return memoryview(data)[starts[lines.offset] : starts[lines.offset + len(lines)]]


def _keys(rows: Any) -> Any:
    keys = rows.column("key")
    if keys.null_count:
        raise DestinationError("a member row of the delta has no identifier")
    return keys


def _joined(parts: list[Any], length: int) -> Any:
    """Return the element-wise concatenation of `parts` (text or string arrays)."""
    if not any(isinstance(p, pa.Array | pa.ChunkedArray) for p in parts):
        return pa.array(["".join(parts)] * length, pa.string())
    return pc.binary_join_element_wise(*parts, "")


def _optional(values: Any, prefix: str, cells: Any, empty: str = "") -> Any:
    """Return `prefix` + the cell of each value, `empty` where the value is null."""
    if values.null_count == len(values):
        return empty
    joined = pc.binary_join_element_wise(prefix, cells(values), "")
    return pc.fill_null(joined, empty) if values.null_count else joined


def _integers(values: Any) -> Any:
    return pc.cast(values, pa.string())


def _json_strings(values: Any) -> Any:
    """Return each text value as a JSON string, as `json.dumps(ensure_ascii=False)` writes it."""
    if not _any(values, _JSON_ESCAPED):
        return _quoted(values)
    if _any(values, _CONTROL):
        return pa.array(
            [None if v is None else encode_basestring(v) for v in values.to_pylist()], pa.string()
        )
    if _any(values, r"\\"):
        values = pc.replace_substring(values, "\\", "\\\\")
    if _any(values, '"'):
        values = pc.replace_substring(values, '"', '\\"')
    return _quoted(values)


def _quoted(values: Any) -> Any:
    return pc.binary_join_element_wise('"', values, '"', "")


def _csv_cells(values: Any) -> Any:
    """Return each text value as one CSV cell, quoted exactly as csv.writer would."""
    if not _any(values, _CSV_QUOTED):
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(pc.match_substring_regex(values, _CSV_QUOTED), quoted, values)


def _any(values: Any, pattern: str) -> bool:
    return bool(pc.any(pc.match_substring_regex(values, pattern)).as_py())
