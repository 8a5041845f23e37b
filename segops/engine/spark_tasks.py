"""What Spark executors run: segops' own DuckDB reading of a source, as Arrow batches.

An executor does not reimplement the identifier checks in Spark SQL: it runs the very
query the DuckDB engine runs (segops.engine.desired), so both engines find the same keys,
the same bad rows and the same attributes. This module is imported on the executors:
segops must be installed there (the same version as the driver's).
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa

from segops.engine.connection import connect, quiet

BATCH_ROWS = 1 << 16


def _arrow_reader(relation: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    """Return the relation's rows as Arrow batches (DuckDB 2 renamed the method)."""
    if hasattr(relation, "to_arrow_reader"):
        return relation.to_arrow_reader(BATCH_ROWS)
    return relation.fetch_arrow_reader(BATCH_ROWS)


def desired_batches(
    sql: str,
    schema: pa.Schema,
    memory_limit: str,
    threads: int | None,
    pieces: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """Run `sql` (a source's desired members) in DuckDB once per input row; yield its rows.

    Cast to `schema`, the Spark schema declared for them: DuckDB may give a narrower type
    (a key column of NULLs only, an integer attribute).
    """
    for piece in pieces:
        for _ in range(piece.num_rows):
            con = connect(memory_limit, threads)
            try:
                with quiet():
                    reader = _arrow_reader(con.sql(sql))
                    for batch in reader:
                        columns = [
                            c.cast(f.type) for c, f in zip(batch.columns, schema, strict=True)
                        ]
                        yield pa.RecordBatch.from_arrays(columns, schema=schema)
            finally:
                con.close()
