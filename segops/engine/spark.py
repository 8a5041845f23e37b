"""The member engine on Apache Spark: the same plan as DuckDB's, computed by a cluster.

Chosen with `engine: {kind: spark}` in segops.yaml, with a `master` URL (a driver of
segops' own, `local[*]` by default) or a Spark Connect `remote`. Spark does the work that
grows with the audience:

- reading a file source: each executor task runs segops' own DuckDB query over it
  (segops.engine.spark_tasks), so keys, bad rows and attributes are the DuckDB engine's;
  CSV and Parquet objects on S3 likewise, one object per task, read from S3 by the task;
- a `sql` source on a `type: spark` source connection: a Spark SQL query whose result goes
  through the same DuckDB query in tasks, batch by batch;
- the diff: the same FULL OUTER JOIN text as DuckDB's (segops.engine.deltas.delta_query),
  run as Spark SQL between those rows and the applied snapshot (read by Spark);
- the snapshot merge after a confirmed apply (an anti-join and a union).

Spark writes the rows it found as Parquet parts into the command's scratch folder; the
canonical file (sorted, content-addressed) is then written by the same DuckDB COPY as the
DuckDB engine's. A delta holds the churn only, so that last step stays small for a plan;
for a snapshot it is one sort on this machine, spilled to disk past `memory_limit`.

What stays in DuckDB on this machine: columns, inline sources, PostgreSQL sources, NDJSON
and hive-partitioned objects (read through segops' connections), error reports (segops'
exact reader names the line), reading a delta for apply. When Spark refuses a source (a
file DuckDB reads only through a copy, say), the diff runs again in DuckDB, whose result is
the same and whose errors are segops' own words; the log says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import pyarrow as pa

from segops.engine import deltas, desired, sources
from segops.engine.connection import arrow_types
from segops.engine.duck import DuckDBEngine, conflict_problem
from segops.engine.external import result_pin
from segops.engine.sources.objects import ObjectStore
from segops.engine.sources.sql import quote_literal
from segops.engine.spark_tasks import (
    ROWS_VIEW,
    Piece,
    byte_pieces,
    desired_batches,
    desired_of_rows,
    object_row_groups,
    row_pieces,
    rows_of_objects,
    write_part,
)
from segops.errors import EngineError, Problem, SegopsError, SourceError
from segops.model import (
    Destination,
    DiffRequest,
    DiffResult,
    EngineConfig,
    KeyEncoding,
    SharedFolder,
    Source,
    SourceConnection,
    SourceConnectionKind,
    SourceKind,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
T = TypeVar("T")

TOKEN_VARIABLE = "SEGOPS_SPARK_TOKEN"
DEFAULT_CONNECT_PORT = 15002
# Settings segops starts its own driver with, unless segops.yaml `engine.conf` gives them.
_DRIVER_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
_ATTR_TYPES = {"data_bag": ("string", pa.string()), "expiration_ts": ("bigint", pa.int64())}
_DUCK_TYPES = {"data_bag": "VARCHAR", "expiration_ts": "BIGINT"}
_FILE_KINDS = (SourceKind.CSV, SourceKind.NDJSON, SourceKind.PARQUET)


class SparkEngine(DuckDBEngine):
    """The member engine whose member-scale work runs on Spark; one per command."""

    LANES = False  # one diff at a time: a Spark job already spreads over the cluster

    def __init__(
        self,
        root: Path,
        work: Path,
        config: EngineConfig,
        connections: Iterable[SourceConnection] = (),
        env: Mapping[str, str] | None = None,
        shared: SharedFolder | None = None,
    ) -> None:
        super().__init__(root, work, config, connections, env)
        self._env = dict(env or {})
        # the state's folder on S3: executors read snapshots and write parts there
        self._exchange = shared
        self._exchange_folder = ""  # "bucket/prefix/work/<uuid>" once this command used it
        self._exchange_fs: Any = None
        self._spark: SparkSession | None = None
        self._names = count()
        self._frames: dict[str, DataFrame] = {}  # reading -> desired rows, kept when shared
        self._current: tuple[Destination, str] | None = None  # (destination, view) being diffed
        self._queries: dict[Source, DataFrame] = {}  # Spark SQL sources' results, run once
        self._interrupted = False  # Ctrl-C: a Spark job that fails now was cancelled

    # -- the session -------------------------------------------------------------------

    @property
    def spark(self) -> SparkSession:
        """Return the Spark session, started on first use."""
        if self._spark is None:
            self._spark = _start(self.config, self._env, self.work)
        return self._spark

    def close(self) -> None:
        self._clear_exchange()
        try:
            if self._spark is not None:
                for frame in (*self._frames.values(), *self._queries.values()):
                    frame.unpersist()
                self._spark.stop()
        except Exception as exc:  # a session already gone: nothing left to release
            log.debug("the Spark session did not stop cleanly: %s", exc)
        finally:
            self._spark = None
            super().close()

    def interrupt(self) -> None:
        """Cancel Spark's jobs and DuckDB's query (from another thread, on Ctrl-C)."""
        self._interrupted = True
        spark = self._spark
        if spark is not None:
            try:
                if _is_connect(spark):
                    spark.interruptAll()
                else:
                    spark.sparkContext.cancelAllJobs()
            except Exception as exc:  # the session is stopping: nothing left to cancel
                log.debug("Spark jobs could not be cancelled: %s", exc)
        super().interrupt()

    # -- the diff ------------------------------------------------------------------------

    def diff(self, request: DiffRequest, snapshot: Path | None, out_dir: Path) -> DiffResult:
        """Compare desired and applied members on Spark; the delta file is DuckDB's bytes."""
        want = request.desired
        if want is None or not self._on_spark(want):
            return super().diff(request, snapshot, out_dir)
        attrs = deltas.union(want.attributes, request.applied.attributes if request.applied else ())
        self.check_columns(want)  # before any Spark job: a missing column is a plain error
        try:
            try:
                self._spark_delta(request, snapshot, attrs, split=True)
            except (SegopsError, KeyboardInterrupt):
                raise
            except Exception as exc:  # a CSV piece with quotes, say: read it as one piece
                if self._interrupted:
                    raise KeyboardInterrupt from None
                if self._spark_query(want.source):  # no other way to read it
                    raise _query_failure(want.source, exc) from None
                log.info("%s: read as one piece (%s)", request.address, _first_line(exc))
                self._spark_delta(request, snapshot, attrs, split=False)
        except (SegopsError, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._refused(exc, f"diff {request.address}")
            self._current = None
            return super().diff(request, snapshot, out_dir)
        try:
            return self._diff_result(request, attrs, out_dir)
        finally:
            self._current = None

    def _on_spark(self, destination: Destination) -> bool:
        """Whether the destination's source is a file Spark's executors read, or a Spark SQL
        query."""
        source = destination.source
        return (
            self._spark_query(source)
            or self._spark_objects(source)
            or (
                source.kind in _FILE_KINDS
                and source.path is not None
                and not self.external.handles(source)
            )
        )

    @staticmethod
    def _spark_objects(source: Source) -> bool:
        """Whether `source` is objects on S3 (CSV, NDJSON, Parquet) that Spark tasks read, one
        object each. The listing stays on this machine: the objects and their ETags, the
        whole dataset's schema and its hive partitions' types (from every path)."""
        return source.url is not None and source.kind in _FILE_KINDS

    def _objects_frame(
        self, destination: Destination, sql: str, schema: pa.Schema, ddl: str
    ) -> tuple[DataFrame, int]:
        """Return a Spark frame of the rows `sql` gives over each object of the destination's
        source, one task per object, and the number of objects."""
        source = destination.source
        parts = self._run(destination, lambda: self.external.object_parts(source))
        name, connection, objects, header, columns, partitions = parts
        limits = (self.config.memory_limit, self.config.threads)
        read = partial(
            rows_of_objects,
            sql,
            name,
            connection,
            source,
            objects,
            header,
            columns,
            partitions,
            schema,
            *limits,
        )
        count = len(objects)
        return self.spark.range(0, count, 1, count).mapInArrow(read, ddl), count

    def _spark_keys(self, destination: Destination) -> None:
        """Find the keys of an NDJSON source's objects in Spark tasks, one object each; when
        Spark cannot (a line that is not a JSON object), this machine scans them and names
        the line."""
        source = destination.source
        sql = self._run(destination, lambda: self.external.keys_sql(source))
        schema = pa.schema([("key", pa.string())])
        try:
            frame, _ = self._objects_frame(destination, sql, schema, "key string")
            found = frame.distinct().collect()
        except (SegopsError, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._refused(exc, f"find the keys of {source.url}")
            return
        self.external.learn_keys(source, (str(row[0]) for row in found))

    def _spark_query(self, source: Source) -> bool:
        """Whether `source` is a query on a `type: spark` source connection."""
        connection = self.external.connections.get(source.connection or "")
        return (
            source.kind is SourceKind.SQL
            and connection is not None
            and connection.kind is SourceConnectionKind.SPARK
        )

    # -- Spark SQL sources -----------------------------------------------------------------

    def _query(self, source: Source) -> DataFrame:
        """Return the result of a Spark SQL source, run once per command and kept (persisted)
        so that its columns, its diff, its pin and its error rows all see one result."""
        frame = self._queries.get(source)
        if frame is None:
            try:
                frame = self.spark.sql(source.query or "").persist()
            except (SegopsError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise _query_failure(source, exc) from None
            self._queries[source] = frame
        return frame

    def _read_types(self, destination: Destination) -> dict[str, str]:
        source = destination.source
        if self._spark_objects(source) and source.kind is SourceKind.NDJSON:
            self._spark_keys(destination)
        if not self._spark_query(source):
            return super()._read_types(destination)
        try:
            empty = self._query(source).limit(0).toArrow()
        except (SegopsError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise _query_failure(source, exc) from None
        return arrow_types(self.con, empty)

    def rows(
        self, source: Source
    ) -> Callable[[], Iterator[tuple[str, int | None, dict[str, object]]]]:
        """Return a reader of a Spark SQL result's rows, numbered, for error reports."""
        if not self._spark_query(source):
            return super().rows(source)

        def located() -> Iterator[tuple[str, int | None, dict[str, object]]]:
            for number, row in enumerate(self._query(source).toLocalIterator(), 1):
                yield source.name, number, row.asDict()

        return located

    def data_pins(self, destination: Destination) -> list[tuple[str, str]]:
        """Pin a Spark SQL result by a digest of its rows: the sum of 120 bits of the md5 of
        each row's JSON (in two 60-bit halves), the row count and the column types; a sum
        does not depend on the order of the rows, and a row given twice counts twice."""
        source = destination.source
        if not self._spark_query(source):
            return super().data_pins(destination)
        frame = self._query(source)
        view = f"segops_result_{next(self._names)}"
        frame.createOrReplaceTempView(view)
        halves = ", ".join(
            f"coalesce(sum(CAST(conv(substr(h, {start}, 15), 16, 10) AS DECIMAL(38, 0))), 0)"
            for start in (1, 16)
        )
        try:
            found = self.spark.sql(
                f"SELECT count(*), {halves} FROM (SELECT md5(to_json(struct(*))) AS h FROM {view})"
            ).collect()[0]
        except (SegopsError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise _query_failure(source, exc) from None
        shape = ";".join(f"{f.name}:{f.dataType.simpleString()}" for f in frame.schema.fields)
        return [(f"sql:{source.connection}", result_pin(found[0], found[1], found[2], shape))]

    def _spark_delta(
        self, request: DiffRequest, snapshot: Path | None, attrs: Sequence[str], split: bool
    ) -> None:
        """Write the diff's rows with Spark; load them into DuckDB's temporary table `delta`."""
        want = request.desired
        assert want is not None
        view = self._desired_view(want, split)
        self._current = (want, view)
        s_sql = None
        if snapshot is not None and request.applied is not None:
            s_sql = self._parquet_view(snapshot, ["k", *attrs], request.applied.encoding)
        query = deltas.delta_query(
            request.mode, f"SELECT * FROM {view}", s_sql, want, request.applied, attrs
        )
        typed = "".join(f", CAST({a} AS {_ATTR_TYPES[a][0]}) AS {a}" for a in attrs)
        rows = self.spark.sql(f"SELECT op, k{typed}, count(*) AS n FROM ({query}) GROUP BY ALL")
        parts = self._write_parts(rows, "delta")
        self._load_parts("delta", parts, ["op", "k", *attrs, "n"], want.identifier.encoding)

    def _load_parts(
        self, table: str, parts: Path | list[str], columns: Sequence[str], encoding: KeyEncoding
    ) -> bool:
        """Load the Parquet parts Spark wrote into DuckDB temporary table `table`, columns
        typed as the DuckDB engine types them; False (and an empty table) when there are none.

        Through a table: DuckDB marks a Parquet column REQUIRED when it knows it holds no
        NULL, which it knows of a table and of one file, not of a folder of parts.
        """
        types = {"op": "VARCHAR", "k": _duck_key(encoding), "n": "BIGINT", **_DUCK_TYPES}
        typed = ", ".join(f"{c}::{types[c]} AS {c}" for c in columns)
        found = bool(parts) if isinstance(parts, list) else any(parts.glob("*.parquet"))
        dataset = None
        if not found:
            sql = f"SELECT {', '.join(f'NULL::{types[c]} AS {c}' for c in columns)} WHERE FALSE"
        elif isinstance(parts, list):  # on S3: read here by pyarrow, as one dataset
            import pyarrow.dataset as ds

            dataset = f"segops_parts_{next(self._names)}"
            files = self._shared_call(
                "read", lambda: ds.dataset(parts, filesystem=self._shared_fs, format="parquet")
            )
            self.con.register(dataset, files)
            sql = f"SELECT {typed} FROM {dataset}"
        else:
            files = quote_literal(str(parts / "*.parquet"))
            sql = f"SELECT {typed} FROM read_parquet({files})"
        try:
            self._run(
                "the rows Spark wrote",
                lambda: self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}"),
            )
        finally:
            if dataset is not None:
                self.con.unregister(dataset)
        return found

    def _refused(self, exc: Exception, what: str) -> None:
        """Note that Spark could not do `what` (DuckDB does it instead); a job cancelled by
        Ctrl-C is an interrupt, not a refusal."""
        if self._interrupted:
            raise KeyboardInterrupt from None
        log.warning(
            "Spark could not %s (%s): DuckDB does it on this machine", what, _first_line(exc)
        )

    def _desired_view(self, destination: Destination, split: bool = True) -> str:
        """Return a Spark view of the destination's desired members (k, bad, attributes),
        read by one task per piece of the source (`split`) or by one task."""
        reading = self.reading(destination)
        frame = self._frames.get(f"{reading}:{split}")
        if frame is None:
            key_type = "binary" if destination.identifier.encoding is KeyEncoding.HEX else "string"
            fields = [("k", key_type, _arrow_key(destination.identifier.encoding))]
            fields.append(("bad", "boolean", pa.bool_()))
            fields += [(a, *_ATTR_TYPES[a]) for a in destination.attributes]
            ddl = ", ".join(f"{name} {spark_type}" for name, spark_type, _ in fields)
            schema = pa.schema([(name, arrow_type) for name, _, arrow_type in fields])
            limits = (self.config.memory_limit, self.config.threads)
            if self._spark_query(destination.source):
                over = f"(SELECT * FROM {ROWS_VIEW})"
                sql = desired.desired_sql(destination, over, self.columns(destination))
                rows = partial(desired_of_rows, sql, schema, *limits)
                frame = self._query(destination.source).mapInArrow(rows, ddl)
            elif self._spark_objects(destination.source):
                types = self.columns(destination)
                sql = desired.desired_sql(destination, self.source_sql(destination), types)
                frame, count = self._objects_frame(destination, sql, schema, ddl)
                log.info("%s: %d objects read by Spark tasks", destination.address, count)
            else:
                pieces = self._pieces(destination, split)
                task = partial(desired_batches, pieces, schema, *limits)
                count = len(pieces)
                frame = self.spark.range(0, count, 1, count).mapInArrow(task, ddl)
            if reading in self._shared:  # several destinations diff it: read it once
                frame = frame.persist()
                self._frames[f"{reading}:{split}"] = frame
        view = f"segops_desired_{next(self._names)}"
        frame.createOrReplaceTempView(view)
        return view

    def _pieces(self, destination: Destination, split: bool) -> list[Piece]:
        """Return the tasks' pieces of the destination's source (see segops.engine.spark_tasks)."""
        source = destination.source
        types = self.columns(destination)
        relation = self.source_sql(destination)  # trims a blank tail into a copy first

        def build(over: str) -> str:
            return desired.desired_sql(destination, over, types)

        if not split:
            return [Piece(build(relation))]
        assert source.path is not None
        path = self._replaced.get(source.path) or sources.data_path(source, self.root)
        if source.kind is SourceKind.PARQUET:
            if "file_row_number" in types:  # the name DuckDB gives row numbers
                return [Piece(build(relation))]
            groups = self._run(destination, lambda: self._row_groups(path))
            return row_pieces(build, path, groups)
        return byte_pieces(build(relation), path, csv=source.kind is SourceKind.CSV)

    def _row_groups(self, path: Path) -> list[tuple[int, int]]:
        rows = self.con.execute(
            "SELECT row_group_id, any_value(row_group_num_rows), "
            "any_value(row_group_bytes) FROM parquet_metadata("
            f"{quote_literal(str(path))}) GROUP BY row_group_id ORDER BY row_group_id"
        ).fetchall()
        return [(int(r[1]), int(r[2])) for r in rows]

    def _parquet_view(self, path: Path, columns: Sequence[str], encoding: KeyEncoding) -> str:
        """Return Spark SQL over a snapshot or delta file, missing attributes as typed NULLs."""
        names = self._run(f"the file {path.name}", lambda: deltas.parquet_columns(path))
        present = set(names)
        view = f"segops_file_{next(self._names)}"
        if self._exchange is None:
            frame = self.spark.read.parquet(str(path))
        else:
            frame = self._object_frame(path, [c for c in names if c in columns], encoding)
        frame.createOrReplaceTempView(view)
        key = "binary" if encoding is KeyEncoding.HEX else "string"
        types = {"op": "string", "k": key, **{a: t for a, (t, _) in _ATTR_TYPES.items()}}
        cols = ", ".join(c if c in present else f"CAST(NULL AS {types[c]}) AS {c}" for c in columns)
        return f"SELECT {cols} FROM {view}"

    # -- the state's folder on S3, shared with the executors -------------------------------

    def _object_frame(self, path: Path, columns: Sequence[str], encoding: KeyEncoding) -> Any:
        """Return a Spark frame of `columns` of the Parquet file `path`, one task per row group,
        each reading its row group from S3: the state's own snapshot object when it is still
        the version whose copy `path` is, else a copy uploaded to this command's folder."""
        assert self._exchange is not None
        url = self._exchange.snapshot_object(path)
        where = url.removeprefix("s3://") if url else self._upload(path)
        groups = self._run(f"the file {path.name}", lambda: deltas.parquet_row_groups(path))
        key = ("binary", pa.binary()) if encoding is KeyEncoding.HEX else ("string", pa.string())
        types = {"op": ("string", pa.string()), "k": key, **_ATTR_TYPES}
        schema = pa.schema([(c, types[c][1]) for c in columns])
        ddl = ", ".join(f"{c} {types[c][0]}" for c in columns)
        task = partial(object_row_groups, where, self._exchange.connection, schema)
        return self.spark.range(0, groups, 1, max(groups, 1)).mapInArrow(task, ddl)

    def _folder(self) -> str:
        """Return this command's scratch folder on S3 ("bucket/prefix/work/<uuid>")."""
        if not self._exchange_folder:
            assert self._exchange is not None
            base = self._exchange.url.removeprefix("s3://").rstrip("/")
            self._exchange_folder = f"{base}/{uuid.uuid4().hex}"
        return self._exchange_folder

    @property
    def _shared_fs(self) -> Any:
        """The pyarrow filesystem of the shared folder, on this machine."""
        if self._exchange_fs is None:
            assert self._exchange is not None
            store = ObjectStore(self._exchange.connection)
            self._exchange_fs = self._shared_call("reach", store.make_filesystem)
        return self._exchange_fs

    def _upload(self, path: Path) -> str:
        """Copy a file of this machine (a delta) to the command's folder; its "bucket/key"."""
        import pyarrow.fs as pafs

        target = f"{self._folder()}/{next(self._names)}-{path.name}"
        self._shared_call(
            "write",
            lambda: pafs.copy_files(str(path), target, destination_filesystem=self._shared_fs),
        )
        return target

    def _shared_call(self, what: str, call: Callable[[], T]) -> T:
        """Run a call to the shared folder; its failure is an EngineError naming the folder."""
        try:
            return call()
        except (SegopsError, KeyboardInterrupt):
            raise
        except Exception as exc:
            assert self._exchange is not None
            raise EngineError(
                f"the Spark engine could not {what} the state's folder {self._exchange.url} "
                f"(engine and state in segops.yaml): {_first_line(exc)}"
            ) from None

    def _clear_exchange(self) -> None:
        """Delete this command's scratch folder on S3 (its parts and uploads).

        By listing and deleting the keys: pyarrow's own delete_dir leaves a marker object for
        the parent folder (it keeps folders "existing"), which would be litter in the state.
        """
        folder, self._exchange_folder = self._exchange_folder, ""
        if not folder:
            return
        assert self._exchange is not None
        bucket, prefix = folder.split("/", 1)
        client = ObjectStore(self._exchange.connection).client()
        try:
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/"
            ):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        except Exception as exc:  # left behind, harmless: named for whoever cleans up
            log.warning("could not delete the scratch objects under s3://%s: %s", folder, exc)

    def _write_parts(self, rows: DataFrame, what: str) -> Path | list[str]:
        """Write a Spark result as Parquet parts into a new folder of the scratch folder, or
        by the executors into one of the shared folder on S3 (then: the parts' "bucket/key")."""
        if self._exchange is not None:
            folder = f"{self._folder()}/{what}-{next(self._names)}"
            task = partial(write_part, folder, self._exchange.connection)
            written = rows.mapInArrow(task, "path string, rows bigint").collect()
            return sorted(str(row[0]) for row in written)
        parts = self.work / "spark" / f"{what}-{next(self._names)}"
        shutil.rmtree(parts, ignore_errors=True)
        parts.parent.mkdir(parents=True, exist_ok=True)
        rows.write.mode("overwrite").parquet(str(parts))
        return parts

    def _check_conflicts(self, destination: Destination) -> None:
        """Count members given twice with different attributes, on Spark while it diffs them."""
        current = self._current
        if current is None or current[0] is not destination or not destination.attributes:
            super()._check_conflicts(destination)
            return
        attrs = destination.attributes
        # DuckDB's count(DISTINCT (a, b)) counts pairs holding NULLs; Spark's struct does too
        value = attrs[0] if len(attrs) == 1 else f"struct({', '.join(attrs)})"
        found = self.spark.sql(
            f"SELECT count(*) AS c FROM (SELECT k FROM {current[1]} WHERE NOT bad GROUP BY k "
            f"HAVING count(DISTINCT {value}) > 1)"
        ).collect()
        conflicts = int(found[0][0]) if found else 0
        if conflicts and self._spark_query(destination.source):
            raise SourceError([conflict_problem(destination, conflicts)])
        if conflicts:
            self._current = None
            super()._check_conflicts(destination)  # the same count, in segops' words

    # -- snapshots -----------------------------------------------------------------------

    def merge_snapshot(
        self,
        snapshot: Path | None,
        delta: Path | None,
        attrs: Sequence[str],
        encoding: KeyEncoding,
        out_dir: Path,
        confirmed: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[Path, str, int]:
        """Merge on Spark (old members not in the delta, and the delta's adds and updates);
        the snapshot file is written sorted by DuckDB, the same bytes as the DuckDB engine's."""
        if snapshot is None or delta is None:
            return super().merge_snapshot(snapshot, delta, attrs, encoding, out_dir, confirmed)
        if confirmed is not None:  # the confirmed rows only: a small file, written by DuckDB
            delta = self._confirmed_rows(delta, attrs, confirmed)
        old = self._parquet_view(snapshot, ["k", *attrs], encoding)
        changes = self._parquet_view(delta, ["op", "k", *attrs], encoding)
        cols = "".join(f", {a}" for a in attrs)
        merged = self.spark.sql(
            f"SELECT o.k{''.join(f', o.{a}' for a in attrs)} FROM ({old}) o "
            f"LEFT ANTI JOIN ({changes}) c ON o.k = c.k "
            f"UNION ALL SELECT k{cols} FROM ({changes}) WHERE op IN ('add', 'update')"
        )
        try:
            parts = self._write_parts(merged, "snapshot")
        except (SegopsError, KeyboardInterrupt):
            raise
        except Exception as exc:
            self._refused(exc, "merge a snapshot")
            return super().merge_snapshot(snapshot, delta, attrs, encoding, out_dir)
        if not self._load_parts("merged", parts, ["k", *attrs], encoding):
            return super().merge_snapshot(None, None, attrs, encoding, out_dir)
        path, digest = self._copy_addressed("SELECT * FROM merged ORDER BY k", out_dir)
        self.con.execute("DROP TABLE merged")
        return path, digest, self._count(path)

    def _confirmed_rows(
        self, delta: Path, attrs: Sequence[str], confirmed: Sequence[tuple[int, int]]
    ) -> Path:
        folder = self.work / "spark"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"confirmed-{next(self._names)}.parquet"
        sql = deltas.delta_sql(delta, attrs, confirmed)
        self._run(
            "the delta file",
            lambda: self.con.execute(
                f"COPY ({sql}) TO {quote_literal(str(target))} (FORMAT parquet)"
            ),
        )
        return target


def _start(config: EngineConfig, env: Mapping[str, str], work: Path) -> SparkSession:
    """Start a Spark driver (`master`) or a Spark Connect session (`remote`)."""
    if importlib.util.find_spec("pyspark") is None:
        raise EngineError(
            "engine.kind is spark but pyspark is not installed: install segops with its "
            "spark extra (pip install -e '.[spark]' in the segops repository)"
        )
    log_file = work / "spark" / "driver.log"
    try:
        if config.remote:
            return _connect(config, env)
        return _driver(config, log_file)
    except Exception as exc:
        where = f"the Spark Connect server {config.remote}" if config.remote else "a Spark driver"
        message = _first_line(exc)
        if log_file.exists() and not config.remote:
            lines = log_file.read_text(errors="replace").strip().splitlines()
            message = f"{message} (the driver's last words: {lines[-1][:300] if lines else ''})"
        token = env.get(TOKEN_VARIABLE)
        if token:
            message = message.replace(token, "***")
        raise EngineError(
            f"the Spark engine could not start on {where} (engine in segops.yaml): {message}"
        ) from None


def _connect(config: EngineConfig, env: Mapping[str, str]) -> SparkSession:
    from pyspark.sql import SparkSession

    assert config.remote is not None
    url = config.remote
    _reachable(url)  # the client retries for minutes: a server that is not there fails now
    if env.get(TOKEN_VARIABLE):
        url = f"{url.rstrip('/')}/;token={env[TOKEN_VARIABLE]}"
    spark = SparkSession.builder.remote(url).getOrCreate()
    for key, value in config.conf:
        spark.conf.set(key, value)
    spark.range(0, 1).collect()  # reach the server now: an unreachable one fails here
    return spark


def _reachable(url: str) -> None:
    """Raise OSError unless something listens at the Spark Connect URL's host and port."""
    place = urlsplit(url.replace("sc://", "http://", 1))
    try:
        port = place.port or DEFAULT_CONNECT_PORT
    except ValueError:
        raise OSError(f"{url} has no valid port") from None
    with socket.create_connection((place.hostname or "localhost", port), timeout=10):
        pass


def _driver(config: EngineConfig, log_file: Path) -> SparkSession:
    """Start a driver in this process; the JVM's output goes to `log_file`, not the terminal."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    master = config.master or "local[*]"
    for variable in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):  # segops.yaml decides
        os.environ.pop(variable, None)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if master.startswith("local"):  # nothing leaves this machine
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf = SparkConf().setMaster(master).setAppName("segops")
    cores = os.cpu_count() or 2
    settings = {**_DRIVER_DEFAULTS, "spark.sql.shuffle.partitions": str(4 * cores)}
    for key, value in {**settings, **dict(config.conf)}.items():
        conf.set(key, value)
    gateway = None
    if SparkContext._gateway is None:  # one JVM per process; a later session reuses it
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as output:  # the JVM keeps its own descriptor
            streams = {"stdout": output, "stderr": output}
            gateway = launch_gateway(conf, popen_kwargs=streams)  # type: ignore[no-untyped-call]
    context = SparkContext(conf=conf, gateway=gateway)
    return SparkSession(context)


def _is_connect(spark: Any) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def _query_failure(source: Source, exc: Exception) -> SourceError:
    """Return the error of a Spark SQL source that Spark refused (Spark's first line)."""
    key = "spec.source.sql.query_file" if source.query_file else "spec.source.sql.query"
    message = f"Spark could not run the query: {_first_line(exc)}"
    return SourceError([Problem(source.manifest, message, source.line, key)])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _duck_key(encoding: KeyEncoding) -> str:
    return "BLOB" if encoding is KeyEncoding.HEX else "VARCHAR"


def _arrow_key(encoding: KeyEncoding) -> pa.DataType:
    return pa.binary() if encoding is KeyEncoding.HEX else pa.string()
