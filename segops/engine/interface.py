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

from collections.abc import Iterable, Iterator, Mapping, Sequence
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
) -> MemberEngine:
    """Return the engine segops.yaml chooses (`engine.kind`), ready for one command."""
    if config.kind is EngineKind.SPARK:
        from segops.engine.spark import SparkEngine

        return SparkEngine(root, work, config, connections, env)
    from segops.engine.duck import DuckDBEngine

    return DuckDBEngine(root, work, config, connections, env)
