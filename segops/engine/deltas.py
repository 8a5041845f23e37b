"""SQL over snapshots and delta files, and the diff query that pairs desired with applied.

Pure text builders, except that a Parquet file's columns are read to know which attributes
it holds (`_parquet_with`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from pathlib import Path

import duckdb

from segops.engine.sources.sql import quote_literal
from segops.model import ATTRIBUTES, Destination, DiffMode, KeyEncoding, SnapshotRef

OP_ORDER = "CASE op WHEN 'remove' THEN 0 WHEN 'add' THEN 1 ELSE 2 END"


def delta_query(
    mode: DiffMode,
    d_sql: str | None,
    s_sql: str | None,
    desired: Destination | None,
    applied: SnapshotRef | None,
    attrs: Sequence[str],
) -> str:
    """Return the SELECT producing (op, k, attrs...) rows; 'invalid' marks bad source rows."""
    d_attrs = "".join(f", {a if a in _own(desired) else 'NULL'} AS {a}" for a in attrs)
    desired_only = (
        f"SELECT CASE WHEN bad THEN 'invalid' ELSE 'add' END AS op, k{d_attrs} FROM ({d_sql})"
    )
    cols = "".join(f", {a}" for a in attrs)
    applied_only = f"SELECT 'remove' AS op, k{cols} FROM ({s_sql})"
    if d_sql is None:
        assert s_sql is not None, "a diff needs a desired side, an applied side or both"
        return applied_only
    if s_sql is None:
        return desired_only
    if mode is DiffMode.REPLACE:
        return f"{applied_only} UNION ALL {desired_only}"
    own = _own(desired)

    def desired_attr(a: str) -> str:
        return f"d.{a}" if a in own else "NULL"

    d_vals = "".join(
        f", CASE WHEN d.bad IS NULL THEN s.{a} ELSE {desired_attr(a)} END AS {a}" for a in attrs
    )
    changed = " OR ".join(f"{desired_attr(a)} IS DISTINCT FROM s.{a}" for a in attrs)
    keep = "TRUE" if mode is DiffMode.REFRESH else f"({changed or 'FALSE'})"
    return (
        "SELECT CASE WHEN d.bad IS NULL THEN 'remove' WHEN d.bad THEN 'invalid' "
        "WHEN s.k IS NULL THEN 'add' ELSE 'update' END AS op, "
        f"coalesce(d.k, s.k) AS k{d_vals} "
        f"FROM ({d_sql}) d FULL OUTER JOIN ({s_sql}) s ON d.k = s.k "
        f"WHERE d.k IS NULL OR s.k IS NULL OR {keep}"
    )


# A large diff of hash keys joins one range of the key space at a time: ranges of the first
# key byte, a power of two of them (see DuckDBEngine._diff_by_key_ranges).
MAX_KEY_RANGES = 16


def key_range_sql(key: str, ranges: int) -> str:
    """Return SQL giving the range (0 to `ranges` - 1) of raw-bytes key `key`, NULL for a
    NULL key: a binary search over the range bounds, log2(`ranges`) byte comparisons."""

    def search(low: int, high: int) -> str:
        if high - low == 1:
            return str(low)
        middle = (low + high) // 2
        bound = _range_bound(middle, ranges)
        return (
            f"CASE WHEN {key} < {bound} THEN {search(low, middle)} ELSE {search(middle, high)} END"
        )

    return f"CASE WHEN {key} IS NOT NULL THEN ({search(0, ranges)})::UTINYINT END"


def in_key_range_sql(key: str, index: int, ranges: int) -> str:
    """Return SQL that is true when raw-bytes key `key` is in range `index` of `ranges`: a
    condition on the key itself, so a reader of a snapshot sorted by key skips the row
    groups of the other ranges."""
    low = f"{key} >= {_range_bound(index, ranges)}" if index else "TRUE"
    high = f"{key} < {_range_bound(index + 1, ranges)}" if index + 1 < ranges else "TRUE"
    return f"{low} AND {high}"


def _range_bound(index: int, ranges: int) -> str:
    """The smallest key of range `index` of `ranges`: one byte."""
    assert ranges & (ranges - 1) == 0 and 1 <= ranges <= MAX_KEY_RANGES
    return f"'\\x{index * 256 // ranges:02x}'::BLOB"


def _own(destination: Destination | None) -> tuple[str, ...]:
    return destination.attributes if destination else ()


def snapshot_sql(
    snapshot: Path, attrs: Sequence[str], present: Collection[str] | None = None
) -> str:
    """Return SQL over a snapshot with exactly `attrs` (missing ones as NULL).

    `present`: the snapshot's columns when the caller has read them (else from its footer).
    """
    return _parquet_with(snapshot, ["k", *attrs], present=present)


def delta_sql(
    delta: Path, attrs: Sequence[str], confirmed: Sequence[tuple[int, int]] | None = None
) -> str:
    """Return SQL over a delta's rows, only those in the `confirmed` ranges when given."""
    sql = _parquet_with(delta, ["op", "k", *attrs], row_numbers=confirmed is not None)
    if confirmed is None:
        return sql
    ranges = " OR ".join(
        f"(file_row_number >= {int(a)} AND file_row_number < {int(b)})" for a, b in confirmed
    )
    return f"SELECT * EXCLUDE (file_row_number) FROM ({sql}) WHERE {ranges or 'FALSE'}"


def _parquet_with(
    path: Path,
    wanted: Sequence[str],
    row_numbers: bool = False,
    present: Collection[str] | None = None,
) -> str:
    if present is None:
        present = set(parquet_columns(path))
    cols = ", ".join(c if c in present else f"NULL AS {c}" for c in wanted)
    if row_numbers:
        return (
            f"SELECT {cols}, file_row_number FROM "
            f"read_parquet({quote_literal(str(path))}, file_row_number = true)"
        )
    return f"SELECT {cols} FROM read_parquet({quote_literal(str(path))})"


def parquet_columns(path: Path) -> list[str]:
    """Return the column names of a (flat) Parquet file, read from its footer.

    pyarrow reads the footer in a tenth of a millisecond, where a DuckDB query costs two:
    it is read for every snapshot and delta. A file that is no Parquet raises DuckDB's
    IOException, as a query would, so callers' error handling sees one kind of failure.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise duckdb.IOException(f"cannot read the Parquet file {path.name}: {exc}") from None


def parquet_rows(path: Path) -> int:
    """Return the rows of a Parquet file, from its footer (see `parquet_columns`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise duckdb.IOException(f"cannot read the Parquet file {path.name}: {exc}") from None


def parquet_row_groups(path: Path) -> int:
    """Return the row groups of a Parquet file, from its footer (see `parquet_columns`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_row_groups)
    except (pa.ArrowException, OSError) as exc:
        raise duckdb.IOException(f"cannot read the Parquet file {path.name}: {exc}") from None


def union(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    """Return the attributes in either, in their fixed order."""
    return tuple(x for x in ATTRIBUTES if x in a or x in b)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def merge_sql(
    snapshot: Path | None,
    delta: Path | None,
    attrs: Sequence[str],
    encoding: KeyEncoding,
    confirmed: Sequence[tuple[int, int]] | None,
) -> str:
    cols = "".join(f", {a}" for a in attrs)
    if snapshot is None and delta is None:
        key_type = "BLOB" if encoding is KeyEncoding.HEX else "VARCHAR"
        typed = {"data_bag": "VARCHAR", "expiration_ts": "BIGINT"}
        nulls = "".join(f", NULL::{typed[a]} AS {a}" for a in attrs)
        return f"SELECT NULL::{key_type} AS k{nulls} WHERE FALSE"
    if snapshot is None:
        assert delta is not None
        d = delta_sql(delta, attrs, confirmed)
        return f"SELECT k{cols} FROM ({d}) WHERE op IN ('add', 'update') ORDER BY k"
    if delta is None:
        return f"SELECT k{cols} FROM ({snapshot_sql(snapshot, attrs)}) ORDER BY k"
    old = snapshot_sql(snapshot, attrs)
    d = delta_sql(delta, attrs, confirmed)
    return (
        f"SELECT k{cols} FROM (SELECT k{cols} FROM ({old}) "
        f"ANTI JOIN (SELECT k FROM ({d})) USING (k) "
        f"UNION ALL SELECT k{cols} FROM ({d}) WHERE op IN ('add', 'update')) ORDER BY k"
    )
