"""Sources read from outside the workspace: objects on S3, and the results of queries.

Objects are listed once per command (their ETags and sizes are the plan's pins) and
registered with DuckDB as a pyarrow dataset, scanned as Arrow batches each time the engine
reads the source. A query runs once per command: its result streams into a DuckDB
table of the engine's in-memory database as Arrow batches (spilling to disk past the memory
limit; a table, not a temporary one, so that the engine's cursors see it too), and its pin is
a digest of the result computed in DuckDB: the sum of a 128-bit hash of every row, in two
64-bit halves, with the row count and the column types. A sum does not depend on the
order of the rows, and unlike a XOR a row that appears twice counts twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import duckdb

from segops.engine import failures
from segops.engine.cells import JSON, TEXT
from segops.engine.connection import arrow_types, quiet
from segops.engine.sources import database
from segops.engine.sources.objects import LINE, ObjectStore, StoredObject, source_error
from segops.engine.sources.sql import quote_ident, quote_literal
from segops.errors import Problem, SourceError
from segops.model import Source, SourceConnection, SourceConnectionKind, SourceKind

T = TypeVar("T")
LocatedRow = tuple[str, int | None, dict[str, object]]


class ExternalSources:
    """The object and query sources one engine reads, each listed or run once."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        connections: Iterable[SourceConnection],
        env: Mapping[str, str],
    ) -> None:
        self.con = con
        self.connections = {c.name: c for c in connections}
        self.env = env
        self._stores: dict[str | None, ObjectStore] = {}
        self._objects: dict[Source, list[StoredObject]] = {}
        self._names: dict[Source, str] = {}
        self._types: dict[Source, dict[str, str]] = {}
        self._pins: dict[Source, list[tuple[str, str]]] = {}
        self._keys: dict[Source, list[str]] = {}
        self._datasets: dict[Source, Any] = {}

    def _register(self, name: str, value: object) -> None:
        self._settle()
        with quiet():
            self.con.register(name, value)

    def _unregister(self, name: str) -> None:
        self._settle()
        self.con.unregister(name)

    def _settle(self) -> None:
        """End a result an earlier query left unread (DuckDB 2 refuses to register then)."""
        complete = getattr(self.con, "complete", None)  # DuckDB 2; before, nothing is pending
        if complete is not None:
            complete()

    @staticmethod
    def handles(source: Source) -> bool:
        return source.url is not None or source.kind is SourceKind.SQL

    # -- relations --------------------------------------------------------------------

    def relation_sql(self, source: Source, columns: Iterable[str]) -> str:
        """Return SQL for the source's rows, its cells typed as its format declares."""
        name = quote_ident(self._relation(source))
        if source.kind is not SourceKind.NDJSON:
            return f"(SELECT * FROM {name})"
        keys = set(self._json_keys(source))
        partitions = [c for c in self.types(source) if c not in keys]
        picked = [
            quote_ident(c) if c in partitions else f"{_pointer('_j', c)} AS {quote_ident(c)}"
            for c in sorted(set(columns))
        ]
        return (
            f"(SELECT {', '.join(picked) or 'NULL AS _segops_none'} FROM "
            f"(SELECT {_LINE_JSON} AS _j{_extra(partitions)} FROM {name} WHERE {_NOT_BLANK}) "
            f"WHERE {_OBJECT_OR_FAIL})"
        )

    def types(self, source: Source) -> dict[str, str]:
        """Return the source's columns and their declared types."""
        if source not in self._types:
            self._types[source] = self._read_types(source)
        return dict(self._types[source])

    def pins(self, source: Source) -> list[tuple[str, str]]:
        """Return (what was read, pin) of the source: its objects, or its query's result."""
        if source.kind is SourceKind.SQL:
            self._relation(source)
        else:
            self._list(source)
        return list(self._pins[source])

    def rows(self, source: Source) -> Callable[[], Iterator[LocatedRow]]:
        """Return a reader of every row with its object and line, for error reports."""
        if source.kind is SourceKind.SQL:
            return lambda: self._table_rows(source)
        store, objects = self._store(source), self._list(source)
        return lambda: store.iter_rows(source, objects)

    # -- objects ----------------------------------------------------------------------

    def _store(self, source: Source) -> ObjectStore:
        if source.connection not in self._stores:
            connection = self.connections.get(source.connection or "")
            self._stores[source.connection] = ObjectStore(connection)
        return self._stores[source.connection]

    def _list(self, source: Source) -> list[StoredObject]:
        if source not in self._objects:
            objects = self._store(source).objects(source)
            self._objects[source] = objects
            self._pins[source] = [(o.url, o.pin) for o in objects]
        return self._objects[source]

    def _relation(self, source: Source) -> str:
        if source not in self._names:
            name = f"external_{len(self._names)}"
            if source.kind is SourceKind.SQL:
                self._load_query(source, name)
            else:
                self._register_objects(source, name)
            self._names[source] = name
        return self._names[source]

    def _register_objects(self, source: Source, name: str) -> None:
        store, objects = self._store(source), self._list(source)
        header: list[str] = []
        if source.kind is SourceKind.CSV:
            header = self._s3(source, lambda: store.header(source, objects[0]))
        dataset = self._s3(source, lambda: store.dataset(source, objects, header))
        self._register(name, dataset)
        self._datasets[source] = (dataset, header)

    def object_parts(
        self, source: Source
    ) -> tuple[str, SourceConnection | None, list[StoredObject], list[str], Any, Any]:
        """Return what reads an object source apart, one object at a time (a Spark task):
        the name its relation SQL reads, the connection, the objects, the CSV header, the
        whole dataset's schema and its hive partitions' schema (each part is read with
        them; None without hive partitioning)."""
        name = self._relation(source)
        dataset, header = self._datasets[source]
        connection = self.connections.get(source.connection or "")
        partitions = dataset.partitioning.schema if source.hive_partitioning else None
        return name, connection, self._list(source), header, dataset.schema, partitions

    def keys_sql(self, source: Source) -> str:
        """Return the query of every key some line's object has (an NDJSON source), over the
        name its relation reads: one `key` column, each key once."""
        name = quote_ident(self._relation(source))
        return (
            f"SELECT DISTINCT unnest(json_keys(_j)) AS key FROM (SELECT {_LINE_JSON} AS _j "
            f"FROM {name} WHERE {_NOT_BLANK}) WHERE {_OBJECT_OR_FAIL} "
            "AND json_type(_j) = 'OBJECT'"
        )

    def learn_keys(self, source: Source, keys: Iterable[str]) -> None:
        """Take the keys of an NDJSON source's objects, found elsewhere (Spark tasks)."""
        self._keys[source] = sorted(set(keys))

    def _s3(self, source: Source, call: Callable[[], T]) -> T:
        """Run a call to S3 through pyarrow; turn its failure into the source's error.

        A parse error (pyarrow's ArrowInvalid, a ValueError) may quote a row: segops' exact
        reader names the line instead. An I/O error says what S3 answered.
        """
        try:
            return call()
        except SourceError:
            raise
        except OSError as exc:
            reason = _first_line(exc)
            raise source_error(source, f"cannot be read from S3: {reason}") from None
        except ValueError:
            raise failures.unreadable(source, self.rows(source)) from None

    def _read_types(self, source: Source) -> dict[str, str]:
        if source.kind is SourceKind.SQL and source not in self._names:
            return self._query_types(source)
        name = quote_ident(self._relation(source))
        rows = self.con.execute(f"DESCRIBE SELECT * FROM {name}").fetchall()
        described = {str(r[0]): str(r[1]) for r in rows}
        if source.kind is SourceKind.CSV:
            return {c: TEXT if t == TEXT else t for c, t in described.items()}
        if source.kind is SourceKind.NDJSON:
            partitions = {c: t for c, t in described.items() if c != LINE}
            return {**{k: JSON for k in self._json_keys(source)}, **partitions}
        return described

    def _json_keys(self, source: Source) -> list[str]:
        """Return every key some line's object has (one scan of the objects)."""
        if source not in self._keys:
            rows = self.con.execute(self.keys_sql(source)).fetchall()
            self._keys[source] = sorted(str(r[0]) for r in rows)
        return self._keys[source]

    # -- queries ----------------------------------------------------------------------

    def _connection(self, source: Source) -> SourceConnection:
        found = self.connections.get(source.connection or "")
        assert found is not None and found.kind is SourceConnectionKind.POSTGRES
        return found

    def _load_query(self, source: Source, name: str) -> None:
        """Run the query; stream its result into a temporary table; pin it by its digest."""
        connection = self._connection(source)
        result, dsn = database.run_query(source, connection, self.env)
        try:
            self._register(f"{name}_stream", result.reader)
            with quiet():
                self.con.execute(
                    f"CREATE TABLE {quote_ident(name)} AS SELECT * FROM "
                    f"{quote_ident(name + '_stream')}"
                )
        except duckdb.Error as exc:
            raise _stream_failure(source, connection, exc, dsn) from None
        except Exception as exc:
            raise database.failure(source, connection, exc, dsn) from None
        finally:
            self._unregister(f"{name}_stream")
            result.close()
        self._pins[source] = [(f"sql:{connection.name}", self._digest(name))]

    def _digest(self, table: str) -> str:
        """Return `result:<rows>:<hex>`, the order-independent digest of a table's rows."""
        quoted = quote_ident(table)
        row = self.con.execute(
            "SELECT count(*), "
            "coalesce(sum(md5_number_upper(to_json(t)::VARCHAR)::HUGEINT), 0), "
            "coalesce(sum(md5_number_lower(to_json(t)::VARCHAR)::HUGEINT), 0) "
            f"FROM {quoted} AS t"
        ).fetchone()
        assert row is not None
        columns = self.con.execute(f"DESCRIBE SELECT * FROM {quoted}").fetchall()
        return result_pin(row[0], row[1], row[2], ";".join(f"{c[0]}:{c[1]}" for c in columns))

    def _query_types(self, source: Source) -> dict[str, str]:
        """Return the result's columns without reading its rows (a LIMIT 0 of the query)."""
        connection = self._connection(source)
        probe = Source(
            source.kind,
            source.manifest,
            source.line,
            connection=source.connection,
            query=database.schema_query(source.query or ""),
            query_file=source.query_file,
        )
        result, dsn = database.run_query(probe, connection, self.env)
        try:
            schema = result.reader.schema
            table = schema.empty_table()
        except Exception as exc:
            raise database.failure(source, connection, exc, dsn) from None
        finally:
            result.close()
        return arrow_types(self.con, table)

    def _table_rows(self, source: Source) -> Iterator[LocatedRow]:
        cursor = self.con.cursor()
        try:
            cursor.execute(f"SELECT * FROM {quote_ident(self._relation(source))}")
            names = [d[0] for d in cursor.description or ()]
            number = 0
            while batch := cursor.fetchmany(10_000):
                for values in batch:
                    number += 1
                    yield source.name, number, dict(zip(names, values, strict=True))
        finally:
            cursor.close()


def result_pin(rows: object, first: object, second: object, shape: str) -> str:
    """Return `result:<rows>:<hex>`, the pin of a query's result from its row count, the two
    order-free sums of its rows' hashes and its columns' `name:type` list."""
    text = f"{rows}:{first}:{second}:{shape}"
    return f"result:{rows}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


_LINE_JSON = f"CAST(ltrim({quote_ident(LINE)}, chr(65279)) AS JSON)"
_NOT_BLANK = f"trim({quote_ident(LINE)}, ' ' || chr(9) || chr(13)) <> ''"
# DuckDB's NDJSON reader refuses a line that is not an object; so does this, by failing.
_OBJECT_OR_FAIL = (
    "(json_type(_j) IN ('OBJECT', 'NULL') OR "
    f"error({quote_literal('a line is not a JSON object')}) IS NULL)"
)


def _pointer(value: str, key: str) -> str:
    """Return SQL for the member `key` of a JSON object (a JSON pointer: any key works)."""
    escaped = key.replace("~", "~0").replace("/", "~1")
    return f"({value} -> {quote_literal('/' + escaped)})"


def _extra(columns: Iterable[str]) -> str:
    return "".join(f", {quote_ident(c)}" for c in columns)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _stream_failure(
    source: Source, connection: SourceConnection, exc: duckdb.Error, dsn: str
) -> SourceError:
    """Return the error for a result DuckDB could not take (a type it does not know)."""
    cause: Any = exc
    text = _first_line(cause)
    if "Python object" in text:  # the driver failed while streaming: its words
        text = text.split(":", 2)[-1].strip()
    message = f"the query's result cannot be read: {database.scrub(text, dsn)}"
    key = "spec.source.sql.query_file" if source.query_file else "spec.source.sql.query"
    return SourceError([Problem(source.manifest, message, source.line, key)])
