"""The member engine: DuckDB relations over sources and snapshots, the diff, delta files.

This is the only module that runs DuckDB queries. Members never become Python sets:
a source is a relation, a snapshot is a Parquet file, and the diff is one FULL OUTER
JOIN that keeps only the rows missing on one side (or whose attributes changed) and
writes them, with the operation in a column, to a delta Parquet file.

Files written here (deltas, snapshots) are content-addressed: named by the sha256 of
their bytes, written sorted so the same members give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from segops.engine import identifiers, sources
from segops.engine.sources import inline
from segops.engine.sources.sql import quote_ident, quote_literal
from segops.errors import Problem, SourceError
from segops.model import (
    ATTRIBUTES,
    DeltaFile,
    Destination,
    DiffMode,
    DiffRequest,
    DiffResult,
    EngineConfig,
    KeyEncoding,
    MemberCounts,
    MemberRow,
    OnBadRows,
    SnapshotRef,
    SourceKind,
)

_OP_ORDER = "CASE op WHEN 'remove' THEN 0 WHEN 'add' THEN 1 ELSE 2 END"
_MAX_REPORTED = 20  # bad rows named in one error; the count says how many there are in all
_FETCH = 50_000


class MemberEngine:
    """One DuckDB connection with segops' limits; used for one command, then closed."""

    def __init__(self, root: Path, work: Path, config: EngineConfig) -> None:
        self.root = root
        self.work = work
        (work / "spill").mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(config={"memory_limit": config.memory_limit})
        self.con.execute(f"SET temp_directory = {quote_literal(str(work / 'spill'))}")
        # Row order is imposed with ORDER BY where it matters; elsewhere it costs memory.
        self.con.execute("SET preserve_insertion_order = false")
        if config.threads:
            self.con.execute(f"SET threads = {int(config.threads)}")
        self._inline_tables: dict[str, str] = {}

    def close(self) -> None:
        self.con.close()

    # -- reading sources -------------------------------------------------------------

    def source_sql(self, destination: Destination) -> str:
        """Return SQL for the destination's source relation, creating inline tables once."""
        source = destination.source
        table = None
        if source.kind is SourceKind.INLINE:
            table = self._inline_table(destination)
        return sources.relation_sql(source, self.root, table)

    def columns(self, destination: Destination) -> dict[str, str]:
        """Return the source's columns and their DuckDB types, or raise SourceError."""
        sql = f"DESCRIBE SELECT * FROM {self.source_sql(destination)}"
        rows = self._run(destination, lambda: self.con.execute(sql).fetchall())
        return {str(r[0]): str(r[1]) for r in rows}

    def check_columns(self, destination: Destination) -> None:
        """Raise SourceError when a column the destination reads is missing from its source."""
        found = self.columns(destination)
        wanted = [("identifier column", destination.identifier.column)]
        wanted += [("data_bag column", destination.data_bag_column or "")]
        wanted += [("expiration_ts column", destination.expiration_ts_column or "")]
        problems = [
            Problem(
                destination.manifest,
                f"{what} '{col}' is not in {_source_name(destination)} "
                f"(columns: {', '.join(sorted(found)) or 'none'})",
                destination.line,
                f"destination {destination.name}",
            )
            for what, col in wanted
            if col and col not in found
        ]
        if problems:
            raise SourceError(problems)

    def desired_sql(self, destination: Destination) -> str:
        """Return SQL for the desired members: key (NULL when invalid), bad flag, attributes."""
        types = self.columns(destination)
        ident = destination.identifier
        value = quote_ident(ident.column)
        if types.get(ident.column) != "VARCHAR":
            value = f"CAST({value} AS VARCHAR)"
        selects = [f"{identifiers.key_sql(ident, value)} AS k"]
        bad = ["k IS NULL"]
        if destination.data_bag_column:
            col = quote_ident(destination.data_bag_column)
            is_text = types.get(destination.data_bag_column) == "VARCHAR"
            selects.append(f"{identifiers.data_bag_sql(col, is_text)} AS data_bag")
            bad.append(f"({col} IS NOT NULL AND data_bag IS NULL)")
        if destination.expiration_ts_column:
            col = quote_ident(destination.expiration_ts_column)
            selects.append(f"{identifiers.expiration_ts_sql(col)} AS expiration_ts")
            bad.append(f"({col} IS NOT NULL AND expiration_ts IS NULL)")
        inner = f"SELECT *, {', '.join(selects)} FROM {self.source_sql(destination)}"
        attrs = "".join(f", {a}" for a in destination.attributes)
        return f"SELECT k, ({' OR '.join(bad)}) AS bad{attrs} FROM ({inner})"

    # -- the diff ----------------------------------------------------------------------

    def diff(self, request: DiffRequest, snapshot: Path | None, out_dir: Path) -> DiffResult:
        """Compare desired and applied members; write the delta file into `out_dir`.

        Raises SourceError when the source has bad rows and the manifest does not skip them,
        or when one member appears twice with different attributes.
        """
        desired = request.desired
        attrs = _union(
            desired.attributes if desired else (),
            request.applied.attributes if request.applied else (),
        )
        d_sql = self.desired_sql(desired) if desired else None
        s_sql = _snapshot_sql(snapshot, attrs) if snapshot and request.applied else None
        query = _delta_query(request.mode, d_sql, s_sql, desired, request.applied, attrs)
        # Duplicate source rows collapse here; bad rows (all keyed NULL) collapse too, so
        # each row keeps how many source rows it stands for.
        self._run(
            desired,
            lambda: self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE delta AS SELECT *, count(*) AS n FROM ({query}) "
                "GROUP BY ALL"
            ),
        )
        counts = dict(
            self.con.execute(
                "SELECT op, CASE op WHEN 'invalid' THEN sum(n) ELSE count(*) END FROM delta "
                "GROUP BY op"
            ).fetchall()
        )
        invalid = int(counts.pop("invalid", 0))
        if desired is not None and invalid:
            if desired.source.on_bad_rows is OnBadRows.ERROR:
                raise SourceError(self._bad_row_problems(desired, invalid))
        if desired is not None and attrs:
            self._check_conflicts(desired, d_sql or "")
        before = request.applied.count if request.applied else 0
        add, remove, update = (int(counts.get(op, 0)) for op in ("add", "remove", "update"))
        member_counts = MemberCounts(
            before=before,
            after=before + add - remove,
            add=add,
            remove=remove,
            update=update,
            skipped=invalid,
        )
        delta = self._write_delta(out_dir, attrs) if member_counts.changed else None
        return DiffResult(request.address, member_counts, delta)

    def _write_delta(self, out_dir: Path, attrs: Sequence[str]) -> DeltaFile:
        cols = "".join(f", {a}" for a in attrs)
        sql = f"SELECT op, k{cols} FROM delta WHERE op <> 'invalid' ORDER BY {_OP_ORDER}, k"
        path, digest = self._copy_addressed(sql, out_dir)
        rows = self._count(path)
        return DeltaFile(digest, rows)

    def _check_conflicts(self, destination: Destination, d_sql: str) -> None:
        attrs = ", ".join(destination.attributes) or "NULL"
        sql = (
            f"SELECT count(*) FROM (SELECT k FROM ({d_sql}) WHERE NOT bad GROUP BY k "
            f"HAVING count(DISTINCT ({attrs})) > 1)"
        )
        row = self._run(destination, lambda: self.con.execute(sql).fetchone())
        conflicts = int(row[0]) if row else 0
        if conflicts:
            raise SourceError(
                [
                    Problem(
                        destination.source.path or destination.manifest,
                        f"{conflicts} member(s) appear more than once with different attributes "
                        f"for destination {destination.address}; keep one row per member",
                    )
                ]
            )

    # -- snapshots and deltas --------------------------------------------------------------

    def merge_snapshot(
        self,
        snapshot: Path | None,
        delta: Path | None,
        attrs: Sequence[str],
        encoding: KeyEncoding,
        out_dir: Path,
        confirmed: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[Path, str, int]:
        """Write the snapshot that results from applying `delta` to `snapshot`.

        Returns (path, sha256, member count). Keys removed, updated or added by the delta
        are taken from the delta; everything else is kept from the old snapshot. With
        `confirmed` ([start, end) ranges of delta row positions), only those rows count:
        the others were not confirmed by the platform and the next plan sends them again.
        """
        cols = "".join(f", {a}" for a in attrs)
        if snapshot is None and delta is None:
            key_type = "BLOB" if encoding is KeyEncoding.HEX else "VARCHAR"
            typed = {"data_bag": "VARCHAR", "expiration_ts": "BIGINT"}
            sql = (
                "SELECT NULL::"
                + key_type
                + " AS k"
                + "".join(f", NULL::{typed[a]} AS {a}" for a in attrs)
                + " WHERE FALSE"
            )
        elif snapshot is None:
            assert delta is not None
            sql = (
                f"SELECT k{cols} FROM ({_delta_sql(delta, attrs, confirmed)}) "
                "WHERE op IN ('add', 'update') ORDER BY k"
            )
        elif delta is None:
            sql = f"SELECT k{cols} FROM ({_snapshot_sql(snapshot, attrs)}) ORDER BY k"
        else:
            old = _snapshot_sql(snapshot, attrs)
            d = _delta_sql(delta, attrs, confirmed)
            sql = (
                f"SELECT k{cols} FROM (SELECT k{cols} FROM ({old}) "
                f"ANTI JOIN (SELECT k FROM ({d})) USING (k) "
                f"UNION ALL SELECT k{cols} FROM ({d}) WHERE op IN ('add', 'update')) ORDER BY k"
            )
        path, digest = self._copy_addressed(sql, out_dir)
        return path, digest, self._count(path)

    def read_delta(self, delta: Path, encoding: KeyEncoding) -> Iterator[MemberRow]:
        """Yield the delta's rows in file order (removes, adds, updates), keys as text."""
        cursor = self.con.cursor()
        names = set(_parquet_columns(cursor, delta))
        bag = "data_bag" if "data_bag" in names else "NULL"
        ts = "expiration_ts" if "expiration_ts" in names else "NULL"
        key = identifiers.key_text_sql(encoding, "k")
        cursor.execute(
            f"SELECT op, {key}, {bag}, {ts}, file_row_number FROM "
            f"read_parquet({quote_literal(str(delta))}, file_row_number = true) "
            "ORDER BY file_row_number"
        )
        try:
            while batch := cursor.fetchmany(_FETCH):
                for op, k, data_bag, expiration_ts, index in batch:
                    yield MemberRow(op, k, data_bag, expiration_ts, index)
        finally:
            cursor.close()

    def _count(self, parquet: Path) -> int:
        row = self.con.execute(
            f"SELECT count(*) FROM read_parquet({quote_literal(str(parquet))})"
        ).fetchone()
        return int(row[0]) if row else 0

    def _copy_addressed(self, sql: str, out_dir: Path) -> tuple[Path, str]:
        """COPY a query to a Parquet file named by its sha256; return (path, digest)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".tmp-{os.getpid()}-{id(sql)}.parquet"
        self.con.execute(f"COPY ({sql}) TO {quote_literal(str(tmp))} (FORMAT parquet)")
        digest = _sha256_file(tmp)
        final = out_dir / f"{digest}.parquet"
        os.replace(tmp, final)
        return final, digest

    # -- errors ------------------------------------------------------------------------------

    def _run(self, destination: Destination | None, call):  # type: ignore[no-untyped-def]
        try:
            return call()
        except duckdb.Error as exc:
            if destination is None:
                raise
            raise SourceError([_duckdb_problem(destination, exc)]) from None

    def _bad_row_problems(self, destination: Destination, invalid: int) -> list[Problem]:
        source = destination.source
        file = source.path or source.manifest
        word = sources.location_word(source)
        problems: list[Problem] = []
        for line, row in sources.iter_rows(source, self.root):
            reason = _row_problem(destination, row)
            if reason is not None:
                line_no = line if word == "line" else None
                suffix = "" if word == "line" else f" (row {line})"
                problems.append(Problem(file, reason + suffix, line_no))
                if len(problems) == _MAX_REPORTED:
                    break
        more = invalid - len(problems)
        tail = f"{invalid} bad row(s) for destination {destination.address}"
        tail += f" ({more} more not listed)" if more > 0 else ""
        tail += "; fix them, or set `on_bad_rows: skip` on the source to leave them out"
        problems.append(Problem(destination.manifest, tail, source.line, "spec.source"))
        return problems

    def _inline_table(self, destination: Destination) -> str:
        key = destination.segment
        if key not in self._inline_tables:
            name = f"inline_{len(self._inline_tables)}"
            cols = inline.columns(destination.source)
            defs = ", ".join(f"{quote_ident(c)} VARCHAR" for c in cols)
            self.con.execute(
                f"CREATE TEMP TABLE {name} (_segops_line INTEGER{', ' if defs else ''}{defs})"
            )
            rows = inline.table_rows(destination.source)
            if rows:
                marks = ", ".join("?" for _ in range(len(cols) + 1))
                self.con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
            self._inline_tables[key] = name
        return self._inline_tables[key]


def _row_problem(destination: Destination, row: dict[str, str | None]) -> str | None:
    ident = destination.identifier
    reason = identifiers.identifier_problem(ident, row.get(ident.column))
    if reason is None and destination.data_bag_column:
        col = destination.data_bag_column
        reason = identifiers.data_bag_problem(col, row.get(col))
    if reason is None and destination.expiration_ts_column:
        col = destination.expiration_ts_column
        reason = identifiers.expiration_ts_problem(col, row.get(col))
    return reason


def _delta_query(
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


def _own(destination: Destination | None) -> tuple[str, ...]:
    return destination.attributes if destination else ()


def _snapshot_sql(snapshot: Path, attrs: Sequence[str]) -> str:
    """Return SQL over a snapshot with exactly `attrs` (missing ones as NULL)."""
    return _parquet_with(snapshot, ["k", *attrs])


def _delta_sql(
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


_SCHEMA_CON: duckdb.DuckDBPyConnection | None = None  # reads Parquet schemas; opened once


def _parquet_with(path: Path, wanted: Sequence[str], row_numbers: bool = False) -> str:
    global _SCHEMA_CON
    if _SCHEMA_CON is None:
        _SCHEMA_CON = duckdb.connect()
    present = set(_parquet_columns(_SCHEMA_CON.cursor(), path))
    cols = ", ".join(c if c in present else f"NULL AS {c}" for c in wanted)
    if row_numbers:
        return (
            f"SELECT {cols}, file_row_number FROM "
            f"read_parquet({quote_literal(str(path))}, file_row_number = true)"
        )
    return f"SELECT {cols} FROM read_parquet({quote_literal(str(path))})"


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    rows = con.execute(
        f"SELECT name FROM parquet_schema({quote_literal(str(path))}) WHERE num_children IS NULL"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _union(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    return tuple(x for x in ATTRIBUTES if x in a or x in b)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _source_name(destination: Destination) -> str:
    return destination.source.path or f"the inline members of {destination.manifest}"


_LINE = re.compile(r"(?:CSV Error on Line|line)\D{0,4}(\d+)", re.IGNORECASE)


def _duckdb_problem(destination: Destination, exc: duckdb.Error) -> Problem:
    """Turn a DuckDB read error into a Problem, without echoing the offending line's content."""
    text = str(exc)
    match = _LINE.search(text)
    reasons = [
        ln.strip()
        for ln in text.splitlines()[1:]
        if ln.strip()
        and not ln.lstrip().startswith(("Original Line", "Possible", "*", "file ="))
        and "=" not in ln
    ]
    first = text.splitlines()[0] if text else type(exc).__name__
    reason = reasons[0] if reasons and "CSV Error" in first else first
    reason = reason.replace("Invalid Input Error: ", "")
    file = destination.source.path or destination.manifest
    return Problem(file, f"cannot read source: {reason}", int(match.group(1)) if match else None)
