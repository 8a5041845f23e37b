"""Build a typed Segment from one schema-checked Segment document.

The schema has already checked shapes and types; what is left needs segops.yaml (which
platform a connection targets) or the file system (where the source file is).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from segops.config.checks import Placed, target_problems
from segops.config.documents import Document, KeyPath, format_path
from segops.destinations.registry import platform_spec
from segops.errors import Problem
from segops.model import (
    Connection,
    Destination,
    InlineObject,
    InlineValue,
    OnBadRows,
    Segment,
    Source,
    SourceConnection,
    SourceConnectionKind,
    SourceKind,
)

# Locates a data file: returns its workspace-relative path or raises ValueError saying why not.
DataFileLocator = Callable[[Path], str]
# Reads a query file: returns (workspace-relative path, text) or raises ValueError saying why not.
QueryFileReader = Callable[[Path], tuple[str, str]]

_FILE_KINDS = (SourceKind.CSV, SourceKind.NDJSON, SourceKind.PARQUET)


class SegmentBuilder:
    """Turns one Segment document into a Segment; problems are kept in `problems`."""

    def __init__(
        self,
        doc: Document,
        manifest: Path,
        connections: Mapping[str, Connection],
        data_file: DataFileLocator,
        source_connections: Mapping[str, SourceConnection] | None = None,
        query_file: QueryFileReader | None = None,
    ) -> None:
        self.doc = doc
        self.manifest = manifest  # where the document's relative paths start
        self.connections = connections
        self.data_file = data_file
        self.source_connections = source_connections or {}
        self.query_file = query_file
        self.problems: list[Problem] = []

    def build(self) -> tuple[Segment, tuple[Placed, ...]]:
        """Return the Segment and where each destination sits.

        A destination with a problem is left out, and the problem kept in `problems`: the
        segment still takes part in the checks between manifests.
        """
        data = self.doc.data
        name = data["metadata"]["name"]
        source = self._source(data["spec"]["source"])
        self._check_names(data["spec"]["destinations"])
        placed: list[Placed] = []
        for index, raw in enumerate(data["spec"]["destinations"]):
            path: KeyPath = ("spec", "destinations", index)
            destination = self._destination(name, source, raw, path)
            if destination is not None:
                placed.append(Placed(destination, format_path(path)))
        segment = Segment(
            name=name,
            manifest=self.doc.file,
            line=self.doc.line_of(("metadata", "name")),
            source=source,
            destinations=tuple(sorted((p.destination for p in placed), key=lambda d: d.name)),
            description=data["metadata"].get("description", ""),
            owner=data["metadata"].get("owner", ""),
        )
        return segment, tuple(placed)

    def _source(self, raw: Mapping[str, Any]) -> Source:
        path: KeyPath = ("spec", "source")
        line = self.doc.line_of(path)
        on_bad_rows = OnBadRows(raw.get("on_bad_rows", OnBadRows.ERROR.value))
        if "members" in raw:
            rows = tuple(_row(member) for member in raw["members"])
            lines = tuple(self.doc.line_of((*path, "members", i)) for i in range(len(rows)))
            return Source(
                SourceKind.INLINE,
                self.doc.file,
                line,
                rows=rows,
                row_lines=lines,
                on_bad_rows=on_bad_rows,
            )
        if "sql" in raw:
            return self._sql_source(raw["sql"], line, on_bad_rows)
        kind = next(kind for kind in _FILE_KINDS if kind.value in raw)
        spec = raw[kind.value]
        if "url" in spec:
            connection = spec.get("connection")
            self._check_connection((*path, kind.value), connection, SourceConnectionKind.S3)
            return Source(
                kind,
                self.doc.file,
                line,
                delimiter=spec.get("delimiter", ","),
                on_bad_rows=on_bad_rows,
                url=spec["url"],
                hive_partitioning=bool(spec.get("hive_partitioning", False)),
                connection=connection,
            )
        try:
            located: str | None = self.data_file(self.manifest.parent / spec["path"])
        except ValueError as error:
            self.problems.append(self.doc.problem((*path, kind.value, "path"), str(error)))
            located = None
        return Source(
            kind,
            self.doc.file,
            line,
            path=located,
            delimiter=spec.get("delimiter", ","),
            on_bad_rows=on_bad_rows,
        )

    def _sql_source(self, spec: Mapping[str, Any], line: int, on_bad_rows: OnBadRows) -> Source:
        path: KeyPath = ("spec", "source", "sql")
        self._check_connection(
            path, spec["connection"], SourceConnectionKind.POSTGRES, SourceConnectionKind.SPARK
        )
        query, query_file = spec.get("query"), None
        if "query_file" in spec:
            assert self.query_file is not None, "a workspace loader reads query files"
            try:
                query_file, query = self.query_file(self.manifest.parent / spec["query_file"])
            except ValueError as error:
                self.problems.append(self.doc.problem((*path, "query_file"), str(error)))
        return Source(
            SourceKind.SQL,
            self.doc.file,
            line,
            on_bad_rows=on_bad_rows,
            connection=spec["connection"],
            query=query,
            query_file=query_file,
        )

    def _check_connection(
        self, path: KeyPath, name: str | None, *kinds: SourceConnectionKind
    ) -> None:
        """Report a `connection` that segops.yaml `sources` does not define as one of `kinds`."""
        if name is None:
            return
        found = self.source_connections.get(name)
        if found is None:
            known = ", ".join(sorted(self.source_connections)) or "none"
            message = f"unknown source connection {name!r}; segops.yaml `sources` defines: {known}"
        elif found.kind not in kinds:
            wanted = " or ".join(k.value for k in kinds)
            message = f"source connection {name!r} is of type {found.kind.value}, not {wanted}"
        else:
            return
        self.problems.append(self.doc.problem((*path, "connection"), message))

    def _check_names(self, destinations: list[Any]) -> None:
        """Report destinations of this segment that share a name (default: the connection)."""
        first: dict[str, int] = {}
        for index, raw in enumerate(destinations):
            field = "name" if "name" in raw else "connection"
            name = raw[field]
            key: KeyPath = ("spec", "destinations", index, field)
            if name in first:
                other = self.doc.line_of(("spec", "destinations", first[name]))
                message = (
                    f"destination name {name!r} is already used by spec.destinations[{first[name]}]"
                    f" (line {other}); give one of them a distinct `name`"
                )
                self.problems.append(self.doc.problem(key, message))
            else:
                first[name] = index

    def _destination(
        self, segment: str, source: Source, raw: Mapping[str, Any], path: KeyPath
    ) -> Destination | None:
        connection = self.connections.get(raw["connection"])
        if connection is None:
            known = ", ".join(sorted(self.connections))
            message = f"unknown connection {raw['connection']!r}; segops.yaml defines: {known}"
            self.problems.append(self.doc.problem((*path, "connection"), message))
            return None
        problems = target_problems(self.doc, path, raw, connection)
        if problems:
            self.problems.extend(problems)
            return None
        spec = platform_spec(connection.target)
        assert spec is not None  # target_problems said it is known
        parts = spec.destination(raw)
        return Destination(
            segment=segment,
            name=raw.get("name", connection.name),
            connection=connection,
            identifier=parts.identifier,
            settings=parts.settings,
            source=source,
            manifest=self.doc.file,
            line=self.doc.line_of(path),
            data_bag_column=parts.data_bag_column,
            expiration_ts_column=parts.expiration_ts_column,
        )


def _row(member: Mapping[str, Any]) -> tuple[tuple[str, InlineValue], ...]:
    """Return an inline member as sorted (column, value) pairs; objects become JSON text."""
    return tuple(sorted((column, _scalar(value)) for column, value in member.items()))


def _scalar(value: Any) -> InlineValue:
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return InlineObject(text)  # kept apart from a string: an object is never an identifier
    return value  # type: ignore[no-any-return]  # the schema allows only scalars and objects
