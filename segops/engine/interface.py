"""What the commands need of a member engine, and the choice of one from segops.yaml.

Two engines implement `MemberEngine`: DuckDB on this machine (segops.engine.duck, the
default) and Apache Spark (segops.engine.spark, `engine: {kind: spark}`), which runs the
member-scale work (reading file sources, the diff join, the snapshot merge) on a Spark
cluster. Both give the same bytes: a delta or a snapshot is written last by the same
canonical DuckDB COPY (sorted, content-addressed), whichever engine computed its rows.
Nothing above this interface knows which engine runs; pyspark is imported only when the
Spark engine is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from segops.model import (
    Destination,
    DiffRequest,
    DiffResult,
    EngineConfig,
    EngineKind,
    KeyEncoding,
    MemberRow,
    SharedFolder,
    SourceConnection,
)


class MemberEngine(Protocol):
    """The member engine of one command: sources, snapshots, the diff and delta files."""

    @property
    def work(self) -> Path:
        """Return the command's scratch folder."""
        ...

    def reading(self, destination: Destination) -> str:
        """Return the digest of how the destination's members are read from its source."""
        ...

    def prepare(self, destinations: Sequence[Destination]) -> None:
        """Note the destinations about to be diffed (a shared source is read once)."""
        ...

    def check_source(self, destination: Destination) -> None:
        """Check the source's columns (and an inline source's rows); raise SourceError."""
        ...

    def diff(self, request: DiffRequest, snapshot: Path | None, out_dir: Path) -> DiffResult:
        """Compare desired and applied members; write the delta file into `out_dir`."""
        ...

    def diffs(
        self, jobs: Sequence[tuple[DiffRequest, Path | None]], out_dir: Path
    ) -> Iterator[DiffResult]:
        """Diff each (request, snapshot) of `jobs`; yield the results in their order."""
        ...

    def data_pins(self, destination: Destination) -> list[tuple[str, str]]:
        """Return (what was read, pin) for a source read from outside the workspace."""
        ...

    def merge_snapshot(
        self,
        snapshot: Path | None,
        delta: Path | None,
        attrs: Sequence[str],
        encoding: KeyEncoding,
        out_dir: Path,
        confirmed: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[Path, str, int]:
        """Write the snapshot after `delta` (its `confirmed` rows) landed; (path, sha256, count)."""
        ...

    def side_lane(self, inputs: Iterable[Path | None]) -> AbstractContextManager[None] | None:
        """Return a context in which the calling thread's work on `inputs` runs beside the
        main thread's (a connection of its own), or None: run it on the main thread."""
        ...

    def read_delta(self, delta: Path, encoding: KeyEncoding) -> Iterator[MemberRow]:
        """Yield the delta's rows in file order, keys as the text that is sent."""
        ...

    def delta_batches(self, delta: Path, encoding: KeyEncoding) -> Iterator[Any]:
        """Yield the delta's rows in file order as Arrow record batches (see DuckDBEngine)."""
        ...

    def holds(self, snapshot: Path, value: str, encoding: KeyEncoding) -> bool:
        """Return whether the snapshot holds the member whose identifier is `value`."""
        ...

    def interrupt(self) -> None:
        """Stop the work under way (called from another thread, on Ctrl-C)."""
        ...

    def close(self) -> None:
        """Release the engine's connections."""
        ...


def open_engine(
    root: Path,
    work: Path,
    config: EngineConfig,
    connections: Iterable[SourceConnection] = (),
    env: Mapping[str, str] | None = None,
    shared: SharedFolder | None = None,
) -> MemberEngine:
    """Return the engine segops.yaml chooses (`engine.kind`), ready for one command.

    `shared`: the state's folder on S3, when the state is there: the Spark engine's
    executors read snapshots and exchange files there instead of on this machine's disk.
    """
    if config.kind is EngineKind.SPARK:
        from segops.engine.spark import SparkEngine

        return SparkEngine(root, work, config, connections, env, shared)
    from segops.engine.duck import DuckDBEngine

    return DuckDBEngine(root, work, config, connections, env)


class DeferredEngine:
    """The chosen engine, opened on first use: a plan whose diffs are all skipped (sources
    and snapshots as last applied) neither opens nor imports it, which is a third of such a
    plan's time.

    `reading` is the same digest for both engines (segops.engine.desired) and needs no
    engine; `prepare` is remembered and handed over when the engine opens.
    """

    def __init__(self, open_: Callable[[], MemberEngine], work: Path) -> None:
        self._open = open_
        self._work = work
        self._engine: MemberEngine | None = None
        self._prepared: Sequence[Destination] = ()

    def _opened(self) -> MemberEngine:
        if self._engine is None:
            self._engine = self._open()
            if self._prepared:
                self._engine.prepare(self._prepared)
        return self._engine

    @property
    def work(self) -> Path:
        return self._work

    def reading(self, destination: Destination) -> str:
        from segops.engine.desired import reading_digest

        return reading_digest(destination)

    def prepare(self, destinations: Sequence[Destination]) -> None:
        self._prepared = tuple(destinations)
        if self._engine is not None:
            self._engine.prepare(self._prepared)

    def check_source(self, destination: Destination) -> None:
        self._opened().check_source(destination)

    def diff(self, request: DiffRequest, snapshot: Path | None, out_dir: Path) -> DiffResult:
        return self._opened().diff(request, snapshot, out_dir)

    def diffs(
        self, jobs: Sequence[tuple[DiffRequest, Path | None]], out_dir: Path
    ) -> Iterator[DiffResult]:
        return self._opened().diffs(jobs, out_dir) if jobs else iter(())

    def data_pins(self, destination: Destination) -> list[tuple[str, str]]:
        # Pins are taken while a source is read; an engine never opened read nothing.
        return self._engine.data_pins(destination) if self._engine is not None else []

    def merge_snapshot(
        self,
        snapshot: Path | None,
        delta: Path | None,
        attrs: Sequence[str],
        encoding: KeyEncoding,
        out_dir: Path,
        confirmed: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[Path, str, int]:
        return self._opened().merge_snapshot(snapshot, delta, attrs, encoding, out_dir, confirmed)

    def side_lane(self, inputs: Iterable[Path | None]) -> AbstractContextManager[None] | None:
        return self._opened().side_lane(inputs)

    def read_delta(self, delta: Path, encoding: KeyEncoding) -> Iterator[MemberRow]:
        return self._opened().read_delta(delta, encoding)

    def delta_batches(self, delta: Path, encoding: KeyEncoding) -> Iterator[Any]:
        return self._opened().delta_batches(delta, encoding)

    def holds(self, snapshot: Path, value: str, encoding: KeyEncoding) -> bool:
        return self._opened().holds(snapshot, value, encoding)

    def interrupt(self) -> None:
        if self._engine is not None:
            self._engine.interrupt()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
