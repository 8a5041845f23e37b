"""What Spark executors run: segops' own DuckDB reading of a source, one piece per task.

An executor does not reimplement the identifier checks in Spark SQL: it runs the very
query the DuckDB engine runs (segops.engine.desired), so both engines find the same keys,
the same bad rows and the same attributes. That query is row by row, so a source can be
cut into pieces, each read by one task, and the union of the pieces' rows is the whole
file's:

- Parquet: runs of row groups, read with DuckDB's own `file_row_number` filter (DuckDB
  skips the other row groups);
- NDJSON: byte ranges cut at line starts (a JSON line holds no raw line break);
- CSV: byte ranges cut at line starts, each read as the header line and its lines, only
  when the piece holds no quote and no carriage return (then every line break ends a
  row); a piece that holds one stops the job, and the file is read again as one piece.

This module is imported on the executors: segops must be installed there (the same
version as the driver's).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from segops.engine.connection import arrow_reader, connect, quiet
from segops.engine.sources.objects import ObjectStore, StoredObject
from segops.engine.sources.sql import quote_literal
from segops.model import Source, SourceConnection

BATCH_ROWS = 1 << 16
PIECE_BYTES = 64 << 20  # a task's share of a source file
_BLOCK = 8 << 20


class UnsplittableError(Exception):
    """A CSV piece holds a quote or a carriage return: its lines may not be rows."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One task's part of a source: `sql` gives its desired rows.

    With `path`, the task reads the lines that start in bytes [start, end) of that file
    (after `header` bytes of CSV header, which every piece repeats) into a file of its own,
    and `sql` reads that file where it names `path`.
    """

    sql: str
    path: str = ""
    start: int = 0
    end: int = 0
    header: int = 0
    csv: bool = False


def byte_pieces(sql: str, path: Path, csv: bool) -> list[Piece]:
    """Cut a CSV or NDJSON file into pieces of about PIECE_BYTES; one piece when it is small
    or when its CSV header holds a quote or a carriage return."""
    size = path.stat().st_size
    header = 0
    if csv:
        with path.open("rb") as handle:
            first = handle.readline()
        if b'"' in first or b"\r" in first:
            return [Piece(sql)]
        header = len(first)
    count = (size - header) // PIECE_BYTES + 1
    if count <= 1:
        return [Piece(sql)]
    step = -(-(size - header) // count)
    return [
        Piece(sql, str(path), start, min(start + step, size), header, csv)
        for start in range(header, size, step)
    ]


def row_pieces(
    build: Callable[[str], str], path: Path, row_groups: Sequence[tuple[int, int]]
) -> list[Piece]:
    """Cut a Parquet file into runs of row groups of about PIECE_BYTES.

    `row_groups` are (rows, bytes) of each group in order; `build` gives the desired SQL
    over a relation.
    """
    file = quote_literal(str(path))
    whole = f"read_parquet({file})"
    if sum(size for _, size in row_groups) <= PIECE_BYTES:
        return [Piece(build(whole))]
    pieces: list[Piece] = []
    first = last = taken = 0
    for rows, size in row_groups:
        last += rows
        taken += size
        if taken >= PIECE_BYTES:
            pieces.append(Piece(build(_row_range(file, first, last))))
            first, taken = last, 0
    if last > first or not pieces:
        pieces.append(Piece(build(_row_range(file, first, last))))
    return pieces


def _row_range(file: str, first: int, last: int) -> str:
    return (
        f"(SELECT * EXCLUDE (file_row_number) FROM read_parquet({file}, file_row_number = true) "
        f"WHERE file_row_number >= {first} AND file_row_number < {last})"
    )


def desired_batches(
    pieces: Sequence[Piece],
    schema: pa.Schema,
    memory_limit: str,
    threads: int | None,
    ids: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """Yield the desired rows of the pieces whose numbers come in `ids`, cast to `schema`
    (the Spark schema declared for them: DuckDB may give a narrower type)."""
    for batch in ids:
        for number in batch.column(0).to_pylist():
            piece = pieces[int(number)]
            if not piece.path:
                yield from _rows(piece.sql, schema, memory_limit, threads)
                continue
            with tempfile.TemporaryDirectory(prefix="segops-piece-") as folder:
                own = Path(folder) / Path(piece.path).name
                if not _write_lines(piece, own):
                    continue
                sql = piece.sql.replace(quote_literal(piece.path), quote_literal(str(own)))
                yield from _rows(sql, schema, memory_limit, threads)


def desired_of_rows(
    sql: str,
    schema: pa.Schema,
    memory_limit: str,
    threads: int | None,
    rows: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """Yield the desired rows of a query's result, batch by batch: `sql` reads each batch of
    `rows` as the relation ROWS_VIEW (the rules are row by row, so batches may be read
    apart), cast to `schema`."""
    con = connect(memory_limit, threads)
    try:
        for batch in rows:
            con.register(ROWS_VIEW, batch)
            try:
                yield from _cast(con, sql, schema)
            finally:
                con.unregister(ROWS_VIEW)
    finally:
        con.close()


def rows_of_objects(
    sql: str,
    name: str,
    connection: SourceConnection | None,
    source: Source,
    objects: Sequence[StoredObject],
    header: Sequence[str],
    dataset_schema: pa.Schema,
    partitions: pa.Schema | None,
    schema: pa.Schema,
    memory_limit: str,
    threads: int | None,
    ids: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """Yield the rows of `sql` over each object whose number comes in `ids`: each object is
    read from S3 here, as a dataset of its own with the whole dataset's schema and hive
    partitions, registered under the `name` the driver's `sql` reads (the rules are row by
    row: objects may be read apart). Credentials come from this machine's AWS chain (an
    executor's role). `sql` gives a source's desired rows, or an NDJSON source's keys."""
    store = ObjectStore(connection)
    for batch in ids:
        for number in batch.column(0).to_pylist():
            stored = [objects[int(number)]]
            part = store.dataset(source, stored, header, dataset_schema, partitions)
            con = connect(memory_limit, threads)
            try:
                con.register(name, part)
                yield from _cast(con, sql, schema)
            finally:
                con.close()


ROWS_VIEW = "_segops_rows"  # what `desired_of_rows` names a batch of the query's result


def _rows(
    sql: str, schema: pa.Schema, memory_limit: str, threads: int | None
) -> Iterator[pa.RecordBatch]:
    con = connect(memory_limit, threads)
    try:
        yield from _cast(con, sql, schema)
    finally:
        con.close()


def _cast(con: duckdb.DuckDBPyConnection, sql: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Yield the rows of `sql` as batches of `schema` (the Spark schema declared for them:
    DuckDB may give a narrower type)."""
    with quiet():
        for batch in arrow_reader(con.sql(sql), BATCH_ROWS):
            columns = [c.cast(f.type) for c, f in zip(batch.columns, schema, strict=True)]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)


def _write_lines(piece: Piece, target: Path) -> bool:
    """Write the header and the lines that start in [start, end) to `target`; False when
    no line starts there."""
    with open(piece.path, "rb") as source:
        begin = piece.start
        if begin > piece.header:  # a line starts here only after a line break
            source.seek(begin - 1)
            source.readline()
            begin = source.tell()
        source.seek(piece.end - 1)
        source.readline()
        stop = max(source.tell(), piece.end)
        if begin >= stop or begin >= piece.end:
            return False
        with target.open("wb") as out:
            source.seek(0)
            out.write(source.read(piece.header))
            source.seek(begin)
            left = stop - begin
            while left > 0:
                block = source.read(min(_BLOCK, left))
                if not block:
                    break
                if piece.csv and (b'"' in block or b"\r" in block):
                    raise UnsplittableError(piece.path)
                out.write(block)
                left -= len(block)
    return True


PARTS_SCHEMA = pa.schema([("path", pa.string()), ("rows", pa.int64())])


def object_row_groups(
    path: str, connection: SourceConnection, schema: pa.Schema, ids: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """Yield the row groups whose numbers come in `ids` of the Parquet object `path`
    ("bucket/key": a snapshot or a delta in the state's bucket), read from S3 here with this
    machine's AWS chain: the columns of `schema`, cast to its types."""
    import pyarrow.parquet as pq

    filesystem = ObjectStore(connection).make_filesystem()
    with filesystem.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        for batch in ids:
            for number in batch.column(0).to_pylist():
                table = parquet.read_row_group(int(number), columns=schema.names)
                for part in table.to_batches(BATCH_ROWS):
                    columns = [c.cast(f.type) for c, f in zip(part.columns, schema, strict=True)]
                    yield pa.RecordBatch.from_arrays(columns, schema=schema)


def write_part(
    folder: str, connection: SourceConnection, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """Write this task's rows as one Parquet object in `folder` ("bucket/prefix") on S3;
    yield its path and rows (nothing for a task without rows).

    The object is named by the task's partition: an attempt run again writes the same name,
    and the driver reads only the objects the job's answer names.
    """
    import pyarrow.parquet as pq
    from pyspark import TaskContext

    context = TaskContext.get()
    number = context.partitionId() if context is not None else 0
    path = f"{folder}/part-{number:05d}.parquet"
    filesystem = ObjectStore(connection).make_filesystem()
    rows = 0
    writer: pq.ParquetWriter | None = None
    sink: Any = None
    try:
        for batch in batches:
            if writer is None:
                sink = filesystem.open_output_stream(path)
                writer = pq.ParquetWriter(sink, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    if writer is not None:
        yield pa.RecordBatch.from_pylist([{"path": path, "rows": rows}], schema=PARTS_SCHEMA)
