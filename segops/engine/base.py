"""One DuckDB connection with segops' limits, and the one place where its errors are caught.

Every query runs through `_run`: stdout is kept for the requested format (see
segops.engine.connection), and a DuckDB error becomes segops' own: a SourceError naming the
file and the exact line (found by segops' exact reader, never parsed out of DuckDB's text),
or a StateError for a snapshot or delta file. No DuckDB exception leaves the engine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from itertools import count
from pathlib import Path
from typing import TypeVar

import duckdb

from segops.engine import deltas, failures, sources
from segops.engine.connection import connect, quiet
from segops.engine.external import ExternalSources
from segops.engine.sources import csv
from segops.engine.sources.sql import quote_literal
from segops.errors import ManifestError, Problem, SourceError, StateError
from segops.model import Destination, EngineConfig, Source, SourceConnection, SourceKind

T = TypeVar("T")
# A diff or merge whose inputs (source file, snapshot, delta) hold fewer bytes than this
# runs on one thread: DuckDB's fixed cost of a query on two threads (about 3 ms against
# 1 ms here) is most of the time of a small destination, and one thread writes the same
# bytes (such a file is one row group).
SMALL_INPUT_BYTES = 4 << 20
_DAMAGED = "the file is damaged or was replaced; restore the state folder from a backup"


class EngineBase:
    """The connection, the addressed Parquet writes, and DuckDB errors in segops' words."""

    def __init__(
        self,
        root: Path,
        work: Path,
        config: EngineConfig,
        connections: Iterable[SourceConnection] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`connections` are segops.yaml `sources`; `env` holds the DSNs they name."""
        self.root = root
        self.work = work
        self.config = config
        (work / "spill").mkdir(parents=True, exist_ok=True)
        try:
            self._con = connect(config.memory_limit, config.threads)
        except duckdb.Error:
            message = (
                f"the member engine refuses memory_limit {config.memory_limit!r} or threads "
                f"{config.threads!r}: give a size such as 2GB, and from 1 thread to one per core"
            )
            raise ManifestError([Problem("segops.yaml", message, path="engine")]) from None
        self._local = threading.local()  # a lane's own connection (DuckDBEngine.diffs)
        self._lanes: set[duckdb.DuckDBPyConnection] = set()
        self._scratch = count()  # scratch files: unique across lanes
        with quiet():
            self.con.execute(f"SET temp_directory = {quote_literal(str(work / 'spill'))}")
            # Row order is imposed with ORDER BY where it matters; elsewhere it costs memory.
            self.con.execute("SET preserve_insertion_order = false")
            row = self.con.execute("SELECT current_setting('threads')").fetchone()
        self._threads = self._running = int(row[0]) if row else 1
        # CSV sources read through a copy: LF only, or without their trailing blank lines
        self._replaced: dict[str, Path] = {}
        self._normalised: set[str] = set()  # of those, the ones made LF only
        self._checked_tails: set[str] = set()
        self.external = ExternalSources(self.con, connections, env or {})

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection of the calling thread: a lane's own, or the engine's."""
        lane: duckdb.DuckDBPyConnection | None = getattr(self._local, "con", None)
        return lane if lane is not None else self._con

    @contextmanager
    def _lane(self) -> Iterator[None]:
        """Run the calling thread's queries on a connection of its own, one DuckDB thread.

        The connection shares the database (its settings: memory, spill folder), not the
        temporary tables: two lanes each diff into their own `delta` table. Work in a lane
        leaves the `threads` setting alone (it is the database's, shared).
        """
        con = self._con.cursor()
        self._lanes.add(con)
        self._local.con = con
        try:
            yield
        finally:
            self._local.con = None
            self._lanes.discard(con)
            con.close()

    def side_lane(self, inputs: Iterable[Path | None]) -> AbstractContextManager[None] | None:
        """Return a lane for work on `inputs` beside the main thread's, or None.

        None when the inputs are not small (SMALL_INPUT_BYTES), or when this engine has no
        lanes (`LANES`, or one thread): such work runs on the main thread.
        """
        if not self.LANES or self._threads < 2 or not self._small(inputs):
            return None
        return self._lane()

    LANES = True  # whether small work may run side by side (the Spark engine: not)

    def close(self) -> None:
        self._con.close()

    def interrupt(self) -> None:
        """Stop the queries under way (called from another thread, on Ctrl-C)."""
        for lane in list(self._lanes):
            with suppress(duckdb.Error):  # a lane closing meanwhile has nothing to stop
                lane.interrupt()
        self._con.interrupt()

    def _count(self, parquet: Path) -> int:
        return self._run(f"the file {parquet.name}", lambda: deltas.parquet_rows(parquet))

    def _fit_threads(self, inputs: Iterable[Path | None], known: bool = True) -> None:
        """Run the next queries on one thread when `inputs` are small, else on all of them.

        `known`: every input is among `inputs` (None ones are absent); a source read from
        outside the workspace is not, and keeps every thread.
        """
        if getattr(self._local, "con", None) is not None:
            return  # a lane: its queries run on the calling thread, whatever the setting
        want = 1 if known and self._small(inputs) else self._threads
        if want != self._running:
            with quiet():
                self.con.execute(f"SET threads = {want}")
            self._running = want

    @staticmethod
    def _small(inputs: Iterable[Path | None]) -> bool:
        """Whether the files `inputs` (None: absent) hold fewer than SMALL_INPUT_BYTES."""
        total = 0
        for path in inputs:
            try:
                total += path.stat().st_size if path is not None else 0
            except OSError:
                return False
        return total < SMALL_INPUT_BYTES

    def _copy_addressed(self, sql: str, out_dir: Path) -> tuple[Path, str]:
        """COPY a query to a Parquet file named by its sha256; return (path, digest)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".tmp-{os.getpid()}-{id(self):x}-{next(self._scratch)}.parquet"
        target = quote_literal(str(tmp))
        self._run(
            "the members being written",
            lambda: self.con.execute(f"COPY ({sql}) TO {target} (FORMAT parquet)"),
        )
        digest = deltas.sha256_file(tmp)
        final = out_dir / f"{digest}.parquet"
        os.replace(tmp, final)
        return final, digest

    def _run(
        self, subject: Destination | str, call: Callable[[], T], snapshot: Path | None = None
    ) -> T:
        """Run DuckDB work with stdout kept clean; turn any DuckDB error into segops' own.

        `subject` is the destination whose source is read, or what else is read (in words).
        A CSV that DuckDB refuses only for mixing LF and CRLF is read again through a copy.
        """
        try:
            with quiet():
                return call()
        except duckdb.InterruptException:  # Ctrl-C (`interrupt`): not a problem of the data
            raise KeyboardInterrupt from None
        except duckdb.Error as exc:
            error = exc
        if isinstance(subject, Destination) and self._uniform_line_endings(subject, error):
            try:
                with quiet():
                    return call()
            except duckdb.Error as exc:
                error = exc
        raise self._failure(subject, error, snapshot) from None

    def _uniform_line_endings(self, destination: Destination, error: duckdb.Error) -> bool:
        """Read a CSV with CRLF endings through an LF-only copy once DuckDB refused it.

        DuckDB wants one line ending per file; a copy (a byte scan and a write) is cheaper than
        the exact reader, so it is tried first: when the copy fails too, the exact reader
        names the line.
        """
        source = destination.source
        if source.kind is not SourceKind.CSV or source.path in self._normalised or source.url:
            return False
        if failures.resource_problem(error, self.config.memory_limit):
            return False
        assert source.path is not None
        path = self._replaced.get(source.path) or sources.data_path(source, self.root)
        if not csv.has_crlf(path):
            return False
        self._replaced[source.path] = csv.normalised_copy(path, self._copy_path())
        self._normalised.add(source.path)
        return True

    def _trim_blank_tail(self, destination: Destination) -> None:
        """Read a one-column CSV that ends with blank lines through a copy without them.

        DuckDB would read each blank line of a one-column file as an empty value; blank
        lines at the end of a file are no rows (an editor's or an export's last newline).
        """
        source = destination.source
        if source.kind is not SourceKind.CSV or source.path is None:
            return
        if source.path in self._replaced or source.path in self._checked_tails:
            return
        self._checked_tails.add(source.path)
        path = sources.data_path(source, self.root)
        drop = csv.trailing_blank_bytes(path)
        if drop and len(csv.header(path, source.delimiter, source.path)) == 1:
            self._replaced[source.path] = csv.trimmed_copy(path, self._copy_path(), drop)

    def _copy_path(self) -> Path:
        folder = self.work / "sources"
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder / f"{id(self):x}-{next(self._scratch)}.csv"

    def _failure(
        self, subject: Destination | str, error: duckdb.Error, snapshot: Path | None
    ) -> SourceError | StateError:
        resource = failures.resource_problem(error, self.config.memory_limit)
        if not isinstance(subject, Destination):
            return StateError(f"the member engine failed on {subject}: {resource or _DAMAGED}")
        source = subject.source
        if resource:
            return SourceError([Problem(source.name, f"while this source was read, {resource}")])
        found = failures.source_problem(source, self.rows(source))
        if found is not None:
            return SourceError([found])
        if snapshot is not None and not self._readable(snapshot):
            return StateError(
                f"the applied snapshot of {subject.address} ({snapshot.name}) cannot be read: "
                f"{_DAMAGED}"
            )
        return failures.unreadable(source, self.rows(source))

    def rows(
        self, source: Source
    ) -> Callable[[], Iterator[tuple[str, int | None, dict[str, object]]]]:
        """Return a reader of the source's rows with their file and line, for error reports."""
        if self.external.handles(source):
            return self.external.rows(source)
        return failures.local_rows(source, self.root)

    def _readable(self, parquet: Path) -> bool:
        sql = f"SELECT count(*) FROM read_parquet({quote_literal(str(parquet))})"
        try:
            with quiet():
                self.con.execute(sql)
        except duckdb.Error:
            return False
        return True
