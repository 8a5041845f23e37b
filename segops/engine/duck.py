"""The member engine: DuckDB relations over sources and snapshots, the diff, delta files.

This is the only module that runs DuckDB queries on sources. Members never become Python
sets: a source is a relation, a snapshot is a Parquet file, and the diff is one FULL OUTER
JOIN that keeps only the rows missing on one side (or whose attributes changed) and
writes them, with the operation in a column, to a delta Parquet file.

Files written here (deltas, snapshots) are content-addressed: named by the sha256 of
their bytes, written sorted so the same members give the same bytes. Every query runs
through `EngineBase._run` (segops.engine.base): no DuckDB exception leaves the engine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import duckdb

from segops._text import plural
from segops.engine import deltas, desired, failures, identifiers, lookup, sources
from segops.engine.base import SMALL_INPUT_BYTES, EngineBase
from segops.engine.cells import JSON, TEXT
from segops.engine.connection import arrow_reader, quiet
from segops.engine.sources import csv, inline, ndjson
from segops.engine.sources.errors import UnreadableRow
from segops.engine.sources.sql import quote_ident, quote_literal
from segops.errors import EngineError, Problem, SourceError
from segops.model import (
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
    SourceConnection,
    SourceKind,
    size_bytes,
)

_FETCH = 50_000
# sources a lane may diff: local files, read by DuckDB alone (no temporary table of their own)
_LANE_KINDS = frozenset({SourceKind.CSV, SourceKind.NDJSON, SourceKind.PARQUET})


class DuckDBEngine(EngineBase):
    """The member engine on one DuckDB connection; used for one command, then closed."""

    # A diff of hash keys joins by key ranges from this many applied members (3e7: 2 GB of
    # source text), when memory_limit allows this many bytes a member (see _by_key_ranges),
    # in ranges of about this many members (1e8 members: 4 ranges, measured best).
    KEY_RANGES_FROM = 30_000_000
    KEY_RANGES_BYTES = 64
    KEY_RANGE_MEMBERS = 25_000_000

    def __init__(
        self,
        root: Path,
        work: Path,
        config: EngineConfig,
        connections: Iterable[SourceConnection] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(root, work, config, connections, env)
        self._inline_tables: dict[tuple[str, ...], str] = {}
        self._types: dict[tuple[str, ...], dict[str, str]] = {}
        self._shared: set[str] = set()  # readings that more than one destination diffs
        self._shared_tables: dict[str, str] = {}  # reading -> temp table of its desired members

    @property
    def _optimistic(self) -> bool:
        """Whether this thread's diff decodes hash keys without `try` (identifiers.key_sql)."""
        return bool(getattr(self._local, "optimistic", False))

    @_optimistic.setter
    def _optimistic(self, value: bool) -> None:
        self._local.optimistic = value

    def reading(self, destination: Destination) -> str:
        """Return the digest of how the destination's members are read from its source."""
        return desired.reading_digest(destination)

    def prepare(self, destinations: Sequence[Destination]) -> None:
        """Note the destinations about to be diffed: a source read the same way by several of
        them is read and checked once, into a temporary table of its desired members."""
        seen: set[str] = set()
        for destination in destinations:
            if destination.source.kind is SourceKind.INLINE:
                continue
            reading = self.reading(destination)
            if reading in seen:
                self._shared.add(reading)
            seen.add(reading)

    # -- reading sources -------------------------------------------------------------

    def source_sql(self, destination: Destination) -> str:
        """Return SQL for the destination's source relation, creating inline tables once."""
        source = destination.source
        wanted = [column for _, column in desired.roles(destination)]
        if self.external.handles(source):
            return self.external.relation_sql(source, wanted)
        self._trim_blank_tail(destination)
        table = self._inline_table(destination) if source.kind is SourceKind.INLINE else None
        replaced = self._replaced.get(source.path or "")
        return sources.relation_sql(source, self.root, wanted, table, replaced)

    def columns(self, destination: Destination) -> dict[str, str]:
        """Return the source's columns and their declared types, or raise SourceError."""
        source = destination.source
        key = (source.kind.value, source.path or source.manifest, str(source.line))
        if key not in self._types:
            self._types[key] = self._read_types(destination)
        types = dict(self._types[key])
        if not types and source.kind in (SourceKind.INLINE, SourceKind.NDJSON):
            # No row names any key (an empty file or list): no column can be missing, and
            # whatever rows there are ({} or null lines) are empty members.
            types = {column: JSON for _, column in desired.roles(destination)}
        return types

    def _read_types(self, destination: Destination) -> dict[str, str]:
        source = destination.source
        if source.kind is SourceKind.INLINE:
            return {column: JSON for column in inline.columns(source)}
        if self.external.handles(source):
            return self._run(destination, lambda: self.external.types(source))
        path = sources.data_path(source, self.root)
        if source.kind is SourceKind.CSV:
            return {name: TEXT for name in csv.header(path, source.delimiter, source.path or "")}
        if source.kind is SourceKind.NDJSON:
            keys = ndjson.keys_sql(path)
            rows = self._run(destination, lambda: self.con.execute(keys).fetchall())
            return {str(r[0]): JSON for r in rows}
        sql = f"DESCRIBE SELECT * FROM {self.source_sql(destination)}"
        rows = self._run(destination, lambda: self.con.execute(sql).fetchall())
        return {str(r[0]): str(r[1]) for r in rows}

    def check_columns(self, destination: Destination) -> None:
        """Raise SourceError when a column the destination reads is missing or of a bad type."""
        name = _source_name(destination)
        problems = desired.column_problems(destination, self.columns(destination), name)
        if problems:
            raise SourceError(problems)

    def check_source(self, destination: Destination) -> None:
        """Check what `validate` checks: the columns, and every row of an inline source.

        File sources are data that refreshes between reviews: `plan` reads every row of
        them; their columns are checked here.
        """
        self.check_columns(destination)
        if destination.source.kind is not SourceKind.INLINE:
            return
        sql = f"SELECT count(*) FILTER (WHERE bad) FROM ({self.desired_sql(destination)})"
        row = self._run(destination, lambda: self.con.execute(sql).fetchone())
        invalid = int(row[0]) if row else 0
        if invalid and destination.source.on_bad_rows is OnBadRows.ERROR:
            raise SourceError(
                failures.bad_row_problems(destination, self.rows(destination.source), invalid)
            )
        if destination.attributes:
            self._check_conflicts(destination)

    def desired_sql(self, destination: Destination) -> str:
        """Return SQL for the desired members: key (NULL when invalid), bad flag, attributes.

        Run inside `_run`: a source several destinations share is read here, once.
        """
        reading = self.reading(destination) if self._shared else ""
        if reading in self._shared_tables:
            return f"SELECT * FROM {self._shared_tables[reading]}"
        self.check_columns(destination)
        sql = desired.desired_sql(
            destination, self.source_sql(destination), self.columns(destination), self._optimistic
        )
        if reading not in self._shared:
            return sql
        name = f"shared_{len(self._shared_tables)}"
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        self._shared_tables[reading] = name
        return f"SELECT * FROM {name}"

    def _source_file(self, destination: Destination) -> Path | None:
        """Return the file a destination's members are read from, None when not a local file."""
        source = destination.source
        if source.path is None or self.external.handles(source):
            return None
        return self._replaced.get(source.path) or self.root / source.path

    # -- the diff ----------------------------------------------------------------------

    def diff(self, request: DiffRequest, snapshot: Path | None, out_dir: Path) -> DiffResult:
        """Compare desired and applied members; write the delta file into `out_dir`.

        Raises SourceError when the source has bad rows and the manifest does not skip them,
        or when one member appears twice with different attributes.
        """
        want = request.desired
        attrs = deltas.union(
            want.attributes if want else (), request.applied.attributes if request.applied else ()
        )

        def run() -> object:
            d_sql = self.desired_sql(want) if want else None
            s_sql = None
            if snapshot and request.applied:
                s_sql = deltas.snapshot_sql(snapshot, attrs, self._parquet_columns(snapshot))
            if d_sql and s_sql and self._by_key_ranges(request):
                return self._diff_by_key_ranges(request, d_sql, s_sql, attrs)
            query = deltas.delta_query(request.mode, d_sql, s_sql, want, request.applied, attrs)
            # Duplicate source rows collapse here; bad rows (all keyed NULL) collapse too, so
            # each row keeps how many source rows it stands for.
            return self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE delta AS SELECT *, count(*) AS n FROM ({query}) "
                "GROUP BY ALL"
            )

        source_file = self._source_file(want) if want is not None else None
        inline = want is not None and want.source.kind is SourceKind.INLINE
        self._fit_threads([snapshot, source_file], known=not want or bool(source_file) or inline)
        if not (want is not None and want.identifier.format and self._first_try(run)):
            self._run(want or f"the snapshot of {request.address}", run, snapshot)
        return self._diff_result(request, attrs, out_dir)

    def _by_key_ranges(self, request: DiffRequest) -> bool:
        """Whether to diff one range of keys at a time (`_diff_by_key_ranges`): hash keys,
        an applied side of at least KEY_RANGES_FROM members, and a memory limit that holds
        the desired keys (KEY_RANGES_BYTES a member); a REPLACE diff joins nothing."""
        want, applied = request.desired, request.applied
        if want is None or applied is None or want.identifier.encoding is not KeyEncoding.HEX:
            return False
        if request.mode is DiffMode.REPLACE or applied.count < self.KEY_RANGES_FROM:
            return False
        limit = size_bytes(self.config.memory_limit) or 0
        return limit >= self.KEY_RANGES_BYTES * applied.count

    def _diff_by_key_ranges(
        self, request: DiffRequest, d_sql: str, s_sql: str, attrs: Sequence[str]
    ) -> object:
        """Fill the temporary table `delta` as one diff would, one range of keys at a time.

        One FULL OUTER JOIN of 1e8 keys a side spends most of its time waiting on memory (a
        hash table far larger than the caches: 33 s of a 42 s diff here, against 1.1 s for
        1e7). So the desired keys are read and checked once into a temporary table, with
        the range of each, and each range is joined with the same range of the snapshot,
        which its reader takes from the row groups of that range only (a snapshot is sorted
        by key): a few joins of about KEY_RANGE_MEMBERS a side (more ranges scan the table
        more often: at 1e8, 2/4/8/16/64 ranges took 33/28/29/33/44 s). Equal keys are in the
        same range, so the rows are those of the one join; rows without a key (bad rows)
        are a range of their own. `delta` is written sorted afterwards, so the delta file is
        the same bytes.
        """
        want, applied, mode = request.desired, request.applied, request.mode
        assert applied is not None
        ranges = 2
        while ranges < deltas.MAX_KEY_RANGES and ranges * self.KEY_RANGE_MEMBERS < applied.count:
            ranges *= 2
        ranged = "_segops_key_range"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE desired_keys AS SELECT *, "
            f"{deltas.key_range_sql('k', ranges)} AS {ranged} FROM ({d_sql})"
        )
        parts: list[tuple[str, str | None]] = [
            (
                f"{ranged} = {i}",
                f"SELECT * FROM ({s_sql}) WHERE {deltas.in_key_range_sql('k', i, ranges)}",
            )
            for i in range(ranges)
        ]
        parts.append((f"{ranged} IS NULL", None))
        try:
            for i, (where, s_part) in enumerate(parts):
                d_part = f"SELECT * EXCLUDE ({ranged}) FROM desired_keys WHERE {where}"
                query = deltas.delta_query(mode, d_part, s_part, want, applied, attrs)
                into = "CREATE OR REPLACE TEMP TABLE delta AS" if i == 0 else "INSERT INTO delta"
                self.con.execute(f"{into} SELECT *, count(*) AS n FROM ({query}) GROUP BY ALL")
        finally:
            self.con.execute("DROP TABLE IF EXISTS desired_keys")
        return None

    def diffs(
        self, jobs: Sequence[tuple[DiffRequest, Path | None]], out_dir: Path
    ) -> Iterator[DiffResult]:
        """Diff each (request, snapshot) of `jobs`; yield the results in the order of `jobs`.

        Small diffs of local files (source and snapshot under SMALL_INPUT_BYTES, each file
        read by one of them only) run side by side in lanes, one DuckDB thread each, on
        connections of their own to the same database: such a diff is a few milliseconds of
        DuckDB's fixed costs on one core, and a workspace of a thousand small segments leaves
        the other cores idle. The others run after them, one at a time, on every thread.
        Results and errors come in order: the first job that fails raises, as a loop of
        `diff` calls would, and jobs after it are not yielded.
        """
        lanes = min(self._threads, len(jobs)) if self.LANES else 1
        laned = self._laned(jobs) if lanes > 1 else set()
        if len(laned) < 2:
            for request, snapshot in jobs:
                yield self.diff(request, snapshot, out_dir)
            return
        self._fit_threads([])  # one DuckDB thread for every lane (the setting is shared)

        def lane(request: DiffRequest, snapshot: Path | None) -> DiffResult:
            with self._lane():
                return self.diff(request, snapshot, out_dir)

        pool = ThreadPoolExecutor(lanes, thread_name_prefix="segops-lane")
        try:
            futures = {i: pool.submit(lane, *jobs[i]) for i in sorted(laned)}
            for i, (request, snapshot) in enumerate(jobs):
                if i in futures:
                    yield futures.pop(i).result()
                    continue
                wait(futures.values())  # the lanes are done before a large diff starts
                yield self.diff(request, snapshot, out_dir)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._fit_threads([], known=False)  # every thread again for what comes next

    def _laned(self, jobs: Sequence[tuple[DiffRequest, Path | None]]) -> set[int]:
        """Return the positions of the jobs a lane may run (see `diffs`)."""
        picked: dict[Path, int] = {}
        shared: set[Path] = set()
        for i, (request, snapshot) in enumerate(jobs):
            want = request.desired
            if want is None or want.source.kind not in _LANE_KINDS:
                continue
            source = self._source_file(want)
            if source is None or self.reading(want) in self._shared:
                continue
            if not self._small([source, snapshot]):
                continue  # large, or unreadable: the diff itself says what is wrong, in order
            if source in picked:
                shared.add(source)
            picked[source] = i
        return {i for source, i in picked.items() if source not in shared}

    def _diff_result(self, request: DiffRequest, attrs: Sequence[str], out_dir: Path) -> DiffResult:
        """Count the temporary table `delta`, check it, and write the delta file from it.

        `delta` holds (op, k, attrs..., n): one row per operation and member, 'invalid' rows
        for bad source rows, n the source rows each row stands for.
        """
        want = request.desired
        counts = dict(
            self._run(
                "the member diff",
                lambda: self.con.execute(
                    "SELECT op, CASE op WHEN 'invalid' THEN sum(n) ELSE count(*) END FROM delta "
                    "GROUP BY op"
                ).fetchall(),
            )
        )
        invalid = int(counts.pop("invalid", 0))
        if want is not None and invalid and want.source.on_bad_rows is OnBadRows.ERROR:
            raise SourceError(failures.bad_row_problems(want, self.rows(want.source), invalid))
        if want is not None and want.attributes:
            self._check_conflicts(want)
        before = request.applied.count if request.applied else 0
        add, remove, update = (int(counts.get(op, 0)) for op in ("add", "remove", "update"))
        member_counts = MemberCounts(before, before + add - remove, add, remove, update, invalid)
        rows = add + remove + update  # the delta's rows: one per key of those operations
        delta = self._write_delta(out_dir, attrs, rows) if member_counts.changed else None
        return DiffResult(request.address, member_counts, delta)

    def _parquet_columns(self, path: Path) -> list[str]:
        """Return the columns of a Parquet file, read from its footer.

        pyarrow reads a footer in 0.1 ms, this connection in 2 ms, but importing pyarrow
        takes 0.1 s: a plan of one large destination would spend it on this alone. So a
        large file is asked of DuckDB while nothing has imported pyarrow yet; small ones,
        which come by the thousand, of pyarrow.
        """
        if "pyarrow" in sys.modules or _size(path) < SMALL_INPUT_BYTES:
            return deltas.parquet_columns(path)
        rows = self.con.execute(
            "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL OR num_children = 0",
            [str(path)],
        ).fetchall()
        return [str(row[0]) for row in rows]

    def _first_try(self, run: Callable[[], object]) -> bool:
        """Run the diff with hash keys decoded optimistically; False when DuckDB refused it.

        Any refusal (a value that is not hex, a CSV that mixes line endings) is left to the
        ordinary run, which gives bad rows their NULL key and every error segops' words.
        """
        self._optimistic = True
        try:
            with quiet():
                run()
        except duckdb.Error:
            return False
        finally:
            self._optimistic = False
        return True

    def _write_delta(self, out_dir: Path, attrs: Sequence[str], rows: int) -> DeltaFile:
        cols = "".join(f", {a}" for a in attrs)
        sql = f"SELECT op, k{cols} FROM delta WHERE op <> 'invalid' ORDER BY {deltas.OP_ORDER}, k"
        _, digest = self._copy_addressed(sql, out_dir)
        return DeltaFile(digest, rows)

    def _check_conflicts(self, destination: Destination) -> None:
        attrs = ", ".join(destination.attributes) or "NULL"

        def count() -> int:
            row = self.con.execute(
                f"SELECT count(*) FROM (SELECT k FROM ({self.desired_sql(destination)}) "
                f"WHERE NOT bad GROUP BY k HAVING count(DISTINCT ({attrs})) > 1)"
            ).fetchone()
            return int(row[0]) if row else 0

        conflicts = self._run(destination, count)
        if conflicts:
            raise SourceError([conflict_problem(destination, conflicts)])

    def data_pins(self, destination: Destination) -> list[tuple[str, str]]:
        """Return (what was read, pin) for a source read from outside the workspace.

        Objects on S3 are pinned by ETag and size, a query's result by a digest of its rows;
        the source is listed or run now unless this engine already read it.
        """
        if not self.external.handles(destination.source):
            return []
        return self._run(destination, lambda: self.external.pins(destination.source))

    # -- snapshots and deltas --------------------------------------------------------------

    def holds(self, snapshot: Path, value: str, encoding: KeyEncoding) -> bool:
        """Return whether the snapshot holds the member whose identifier is `value`."""
        return lookup.snapshot_holds(self, snapshot, value, encoding)

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
        self._fit_threads([snapshot, delta])
        sql = self._run(
            "the applied snapshot or the delta",
            lambda: deltas.merge_sql(snapshot, delta, attrs, encoding, confirmed),
        )
        path, digest = self._copy_addressed(sql, out_dir)
        return path, digest, self._count(path)

    def read_delta(self, delta: Path, encoding: KeyEncoding) -> Iterator[MemberRow]:
        """Yield the delta's rows in file order (removes, adds, updates), keys as text."""
        cursor = self.con.cursor()
        what = f"the delta file {delta.name}"
        try:
            sql = self._delta_sql(delta, encoding)
            self._run(what, lambda: cursor.execute(sql))
            while batch := self._run(what, lambda: cursor.fetchmany(_FETCH)):
                for op, k, data_bag, expiration_ts, index in batch:
                    yield MemberRow(op, k, data_bag, expiration_ts, index)
        finally:
            cursor.close()

    def delta_batches(self, delta: Path, encoding: KeyEncoding) -> Iterator[Any]:
        """Yield the delta's rows in file order as Arrow record batches, keys as text.

        Columns: op, key (VARCHAR), data_bag (VARCHAR), expiration_ts (BIGINT), index (the
        row's position in the file), the fields of `read_delta`'s rows; for writers that
        format whole columns instead of one row at a time.
        """
        what = f"the delta file {delta.name}"
        if _size(delta) < SMALL_INPUT_BYTES:
            # A small delta is read whole by pyarrow: a DuckDB query's fixed cost (3 ms)
            # was most of the time of reading a small destination's delta.
            yield self._run(what, lambda: _small_delta(delta, encoding))
            return
        cursor = self.con.cursor()
        try:
            sql = self._delta_sql(delta, encoding, ordered=False)
            reader = self._run(what, lambda: self._delta_reader(cursor, sql))
            start = 0
            while (batch := self._run(what, lambda: _next_batch(reader))) is not None:
                start = _in_file_order(batch, start, what)
                yield batch
        finally:
            cursor.close()

    def _delta_reader(self, cursor: duckdb.DuckDBPyConnection, sql: str) -> Any:
        """Start `sql` on `cursor` with its rows in the order it scans them; return its reader.

        The engine turns preserve_insertion_order off (it costs memory in large queries);
        here it is on while the query is planned, which is when DuckDB reads it, so a delta
        streams in file order without sorting it again (a third of the time of reading it).
        `delta_batches` checks the order of every batch all the same.
        """
        self.con.execute("SET preserve_insertion_order = true")
        try:
            return arrow_reader(cursor.sql(sql), _FETCH)
        finally:
            self.con.execute("SET preserve_insertion_order = false")

    def _delta_sql(
        self,
        delta: Path,
        encoding: KeyEncoding,
        *,
        ordered: bool = True,
    ) -> str:
        """Return the query of a delta's rows, typed, keys as the text sent.

        `ordered`: sorted by file position (else in the order DuckDB scans the file).
        """
        names = set(
            self._run(f"the delta file {delta.name}", lambda: deltas.parquet_columns(delta))
        )
        bag = "data_bag" if "data_bag" in names else "NULL"
        ts = "expiration_ts" if "expiration_ts" in names else "NULL"
        key = identifiers.key_text_sql(encoding, "k")
        return (
            f"SELECT op, ({key})::VARCHAR AS key, ({bag})::VARCHAR AS data_bag, "
            f"({ts})::BIGINT AS expiration_ts, file_row_number AS index FROM "
            f"read_parquet({quote_literal(str(delta))}, file_row_number = true)"
            + (" ORDER BY file_row_number" if ordered else "")
        )

    # -- errors ------------------------------------------------------------------------------

    def _inline_table(self, destination: Destination) -> str:
        """Create (once) the table of an inline source's members, cells as JSON."""
        source = destination.source
        names = inline.columns(source) or sorted({c for _, c in desired.roles(destination)})
        key = (destination.segment, *names)
        if key not in self._inline_tables:
            name = f"inline_{len(self._inline_tables)}"
            try:
                data = inline.table_columns(source) if source.rows else [[]] * (len(names) + 1)
            except UnreadableRow as error:
                raise SourceError([Problem(source.manifest, error.message, error.line)]) from None
            defs = "".join(f", {quote_ident(c)} JSON" for c in names)
            unnest = ", ".join(f"unnest(${i})" for i in range(1, len(names) + 2))

            def create() -> None:
                self.con.execute(f"CREATE TEMP TABLE {name} (_segops_line INTEGER{defs})")
                self.con.execute(f"INSERT INTO {name} SELECT {unnest}", data)

            self._run(destination, create)
            self._inline_tables[key] = name
        return self._inline_tables[key]


def conflict_problem(destination: Destination, conflicts: int) -> Problem:
    """Return the problem of `conflicts` members given twice with different attributes."""
    return Problem(
        destination.source.name,
        f"{plural(conflicts, 'member')} {'appears' if conflicts == 1 else 'appear'} more than "
        f"once with different attributes for destination {destination.address}; keep one row "
        "per member",
    )


def _small_delta(delta: Path, encoding: KeyEncoding) -> Any:
    """Return a small delta's rows as one record batch of `delta_batches`' columns and types.

    Read by pyarrow, in file order; keys as the text `identifiers.key_text_sql` gives
    (`bytes.hex()` is DuckDB's lower(hex(k))). A file pyarrow cannot read raises DuckDB's
    IOException, as the query would, for `_run` to name it.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(delta).read()  # one file: no dataset, no partitions
    except (pa.ArrowException, OSError) as exc:
        raise duckdb.IOException(f"cannot read the Parquet file {delta.name}: {exc}") from None
    keys = table.column("k")
    if encoding is KeyEncoding.HEX:
        key = pa.array([None if k is None else k.hex() for k in keys.to_pylist()], pa.string())
    else:
        key = keys.cast(pa.string()).combine_chunks()
    rows = table.num_rows

    def column(name: str, kind: Any) -> Any:
        if name in table.column_names:
            return table.column(name).cast(kind).combine_chunks()
        return pa.nulls(rows, kind)

    return pa.RecordBatch.from_arrays(
        [
            column("op", pa.string()),
            key,
            column("data_bag", pa.string()),
            column("expiration_ts", pa.int64()),
            pa.array(range(rows), pa.int64()),
        ],
        names=["op", "key", "data_bag", "expiration_ts", "index"],
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # the query that reads it says what is wrong, in segops' words
        return 0


def _in_file_order(batch: Any, start: int, what: str) -> int:
    """Check that `batch` holds the rows `start`, `start` + 1, ...; return the next position.

    A delta is sent in file order (batches are ranges of it). The batches come in scan
    order (`_delta_reader`); DuckDB 2.0's DB-API reader, for one, reorders even an
    ORDER BY result when preserve_insertion_order is off (found while writing this). This
    check makes any such change of DuckDB an error instead of a reordered file.
    """
    import pyarrow.compute as pc

    n = batch.num_rows
    if not n:
        return start
    index = batch.column("index")
    steps = pc.min_max(pc.subtract(index.slice(1), index.slice(0, n - 1))).as_py()
    if index[0].as_py() != start or (n > 1 and steps != {"min": 1, "max": 1}):
        raise EngineError(f"{what}: DuckDB returned its rows out of file order")
    return start + int(n)


def _next_batch(reader: Any) -> Any:
    """Return the reader's next batch (None at the end); a read error as DuckDB's own."""
    import pyarrow as pa

    try:
        return next(reader, None)
    except pa.ArrowException as exc:  # DuckDB's error, surfacing through the Arrow stream
        raise duckdb.IOException(str(exc)) from None


def _source_name(destination: Destination) -> str:
    source = destination.source
    if source.kind is SourceKind.INLINE:
        return f"the inline members of {destination.manifest}"
    if source.kind is SourceKind.SQL:
        return f"the result of the query of {source.query_file or destination.manifest}"
    return source.name
