"""Load a workspace: segops.yaml, its Segment manifests and their data files -> model.Workspace.

Every problem is collected before anything is raised, so one run lists them all, each
with its workspace-relative file, line and key path. Nothing here reads member rows:
data files are only located and digested (sources and the member engine read them).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from segops.config import environments
from segops.config.checks import Placed, connection_problems, cross_check, engine_problems
from segops.config.documents import MAX_FILE_BYTES, Document, load_documents
from segops.config.regular import UnreadableFile, check_regular, read_regular
from segops.config.schemas import validate_document
from segops.config.segments import SegmentBuilder
from segops.destinations.registry import platform_spec
from segops.errors import ManifestError, Problem
from segops.model import (
    Connection,
    EngineConfig,
    EngineKind,
    InputFile,
    MovedBlock,
    Platform,
    S3StateSettings,
    Safety,
    Scalar,
    Segment,
    SourceConnection,
    SourceConnectionKind,
    Workspace,
)

CONFIG_FILE = "segops.yaml"
DEFAULT_MANIFEST_GLOBS = ("manifests/**/*.yaml", "manifests/**/*.yml")


def load_workspace(
    root: Path, environment: str | None = None, variables: Mapping[str, str] | None = None
) -> Workspace:
    """Return the validated workspace whose segops.yaml is in `root`, for `environment`.

    `variables` give `${VAR}` values (default: the process environment).

    Raises:
        ManifestError: every problem found, sorted by file and line.
    """
    files = _Files(root.resolve())
    config, environment = _effective(
        files.config(check=False),
        environment,
        os.environ if variables is None else variables,
        files,
    )
    files.external = _external_folders(config, files)
    connections = {c.name: c for c in _connections(config, files)}
    sources = {c.name: c for c in _source_connections(config)}
    state_path = _state_path(config, files)
    files.problems.extend(engine_problems(config))
    safety = Safety().merged(config.data.get("safety", {}))
    segments: list[Segment] = []
    placed: list[Placed] = []
    documents = 0
    for path, name in _manifest_files(config, files):
        before = len(files.problems)
        docs = [doc for doc in files.read_yaml(path, name) if doc.data is not None]
        if not docs and len(files.problems) == before:  # read and parsed, but nothing in it
            # Not skipped: emptying a manifest would silently destroy what it held.
            message = "holds no Segment document: write one, or delete the file"
            files.problems.append(Problem(name, message))
        for doc in docs:  # documents left empty, e.g. after a trailing `---`, are skipped
            documents += 1
            built = _segment(doc, path, connections, sources, files)
            if built is not None:
                overrides = doc.data.get("spec", {}).get("safety", {})
                segments.append(replace(built[0], safety=safety.merged(overrides)))
                placed.extend(built[1])
    if documents == 0 and not files.problems:
        files.problems.append(config.problem(("manifests",), "no Segment document found"))
    files.problems.extend(cross_check(segments, placed))
    moved = _moved(config, {p.destination.address for p in placed}, files)
    if files.problems:
        order = sorted(set(files.problems), key=lambda p: (p.file, p.line or 0, p.path, p.message))
        raise ManifestError(order)
    return replace(
        _workspace(files, config, connections, segments, state_path),
        source_connections=tuple(sources[name] for name in sorted(sources)),
        moved=moved,
        environment=environment,
    )


def _moved(config: Document, addresses: set[str], files: _Files) -> tuple[MovedBlock, ...]:
    """Return segops.yaml's `moved` blocks; record the problems of those that cannot hold."""
    blocks = []
    seen: dict[tuple[str, str], int] = {}
    for index, raw in enumerate(config.data.get("moved", [])):
        old, new = raw["from"], raw["to"]
        path = ("moved", index)
        problems = []
        if old in addresses:
            problems.append(config.problem((*path, "from"), f"{old} is still a destination in "
                "the manifests: a move's old address must be gone from them"))  # fmt: skip
        if new not in addresses:
            problems.append(config.problem((*path, "to"), f"{new} is not a destination in the "
                "manifests: a move's new address must be one"))  # fmt: skip
        for key, value in (("from", old), ("to", new)):
            first = seen.setdefault((key, value), index)
            if first != index:
                message = f"{value} is already the `{key}` of moved[{first}]"
                problems.append(config.problem((*path, key), message))
        files.problems.extend(problems)
        blocks.append(MovedBlock(old, new, config.line_of(path)))
    return tuple(blocks)


def environment_names(root: Path) -> tuple[str, ...]:
    """Return the environments segops.yaml in `root` declares (checked against its schema)."""
    return environments.names(_Files(root.resolve()).config(check=False))


def _effective(
    raw: Document, name: str | None, variables: Mapping[str, str], files: _Files
) -> tuple[Document, str]:
    """Return segops.yaml with its `${VAR}` values and environment `name` applied."""
    used = environments.uses_variables(raw)
    config, problems = environments.interpolate(raw, variables) if used else (raw, [])
    problems += validate_document(config, "segops")  # every environment, values as they came out
    if not problems:
        config, chosen, problems = environments.select(config, name)
    if not problems and chosen:  # an environment's connections merged into the top level
        problems += validate_document(config, "segops")
    if problems:
        raise ManifestError(sorted(set(problems), key=lambda p: (p.line or 0, p.path, p.message)))
    label, digest = environments.effective_input(config, chosen, used)
    if label:
        files.inputs[label] = digest
    return config, chosen


def _external_folders(config: Document, files: _Files) -> tuple[Path, ...]:
    """Return the folders outside the workspace that segops.yaml lets manifests and sources
    be read from; each must exist."""
    found = []
    for index, given in enumerate(config.data.get("external_folders", [])):
        path = (files.root / given).resolve()
        if not path.is_dir():
            message = f"{given}: not a folder (it must exist)"
            files.problems.append(config.problem(("external_folders", index), message))
        else:
            found.append(path)
    return tuple(found)


def _state_path(config: Document, files: _Files) -> str:
    return files.folder(
        config, ("state", "path"), config.data.get("state", {}).get("path", ".segops")
    )


def _state_s3(state: Mapping[str, Any]) -> S3StateSettings | None:
    if state.get("backend") != "s3":
        return None
    given = {key: state[key] for key in ("prefix", "region", "endpoint_url") if key in state}
    return S3StateSettings(state["bucket"], **given)


def _source_connections(config: Document) -> Iterator[SourceConnection]:
    for name, raw in config.data.get("sources", {}).items():
        yield SourceConnection(
            name,
            SourceConnectionKind(raw["type"]),
            region=raw.get("region"),
            endpoint_url=raw.get("endpoint_url"),
            dsn_env=raw.get("dsn_env"),
        )


def _segment(
    doc: Document,
    path: Path,
    connections: Mapping[str, Connection],
    sources: Mapping[str, SourceConnection],
    files: _Files,
) -> tuple[Segment, tuple[Placed, ...]] | None:
    problems = validate_document(doc, "segment")
    if problems:  # a document that fails its schema is not built: its fields cannot be trusted
        files.problems.extend(problems)
        return None
    builder = SegmentBuilder(doc, path, connections, files.data_file, sources, files.query_file)
    built = builder.build()
    files.problems.extend(builder.problems)
    return built


def _workspace(
    files: _Files,
    config: Document,
    connections: Mapping[str, Connection],
    segments: list[Segment],
    state_path: str,
) -> Workspace:
    return Workspace(
        root=str(files.root),
        connections=tuple(connections[name] for name in sorted(connections)),
        segments=tuple(sorted(segments, key=lambda s: s.name)),
        inputs=tuple(InputFile(path, files.inputs[path]) for path in sorted(files.inputs)),
        data_files=tuple(sorted(files.data_files)),
        safety=Safety().merged(config.data.get("safety", {})),
        state_backend=config.data.get("state", {}).get("backend", "local"),
        state_path=state_path,
        state_s3=_state_s3(config.data.get("state", {})),
        engine=_engine(config.data.get("engine", {})),
    )


def _engine(engine: Mapping[str, Any]) -> EngineConfig:
    conf = engine.get("conf", {})
    return EngineConfig(
        memory_limit=engine.get("memory_limit", EngineConfig().memory_limit),
        threads=engine.get("threads"),
        kind=EngineKind(engine.get("kind", EngineKind.DUCKDB.value)),
        master=engine.get("master"),
        remote=engine.get("remote"),
        conf=tuple(sorted((str(k), _conf_text(v)) for k, v in conf.items())),
    )


def _conf_text(value: object) -> str:
    """Return a Spark setting as Spark reads it: true/false for booleans, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Files:
    """Reads workspace files, records the digest of each YAML file, and collects problems."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.inputs: dict[str, str] = {}  # workspace-relative posix path -> sha256
        self.data_files: set[str] = set()  # workspace-relative posix paths of source files
        self.external: tuple[Path, ...] = ()  # segops.yaml's external_folders, resolved

    def inside(self, path: Path, external: bool = False) -> str | None:
        """Return `path` relative to the workspace once resolved, or None when it is outside
        (and, with `external`, outside every external folder too: `../shared/a.yaml`)."""
        resolved = path.resolve()
        if resolved.is_relative_to(self.root):
            return resolved.relative_to(self.root).as_posix()
        if external and any(resolved.is_relative_to(f) for f in self.external):
            return Path(os.path.relpath(resolved, self.root)).as_posix()
        return None

    def folder(self, config: Document, key: tuple[str, ...], given: str) -> str:
        """Return the workspace-relative folder segops.yaml names at `key`, checked."""
        path = self.inside(self.root / given)
        if path is None:
            self.problems.append(config.problem(key, "must stay inside the workspace"))
        else:  # the folder, or the first of its parents that exists, must be a folder
            full = self.root / path
            try:
                found = next(p for p in (full, *full.parents) if p.exists())
            except OSError as error:  # e.g. a name longer than the file system allows
                self.problems.append(config.problem(key, f"cannot be used: {error.strerror}"))
                return path
            if not found.is_dir():
                name = found.relative_to(self.root).as_posix()
                self.problems.append(config.problem(key, f"{name} exists and is not a folder"))
        return path or given

    def config(self, check: bool = True) -> Document:
        """Return the segops.yaml document, schema-checked unless `check` is False (its
        `${VAR}` values are replaced first); raise at once when it is unusable."""
        path = self.root / CONFIG_FILE
        if not os.path.lexists(path):
            raise ManifestError([Problem(CONFIG_FILE, f"not found in {self.root}")])
        docs = [doc for doc in self.read_yaml(path, CONFIG_FILE)]
        if not docs and not self.problems:
            self.problems.append(Problem(CONFIG_FILE, "empty: it needs at least `version: 1`"))
        for extra in docs[1:]:
            self.problems.append(Problem(CONFIG_FILE, "holds more than one document", extra.line))
        if docs and check:
            self.problems.extend(validate_document(docs[0], "segops"))
        if self.problems:  # the rest of the workspace cannot be read without it
            raise ManifestError(self.problems)
        return docs[0]

    def read_yaml(self, path: Path, name: str) -> tuple[Document, ...]:
        """Return the documents of the YAML file `path`, named `name` in problems."""
        try:
            data = read_regular(path, MAX_FILE_BYTES + 1)  # one byte more tells it is too large
        except UnreadableFile as error:
            self.problems.append(Problem(name, str(error)))
            return ()
        self.inputs[name] = hashlib.sha256(data).hexdigest()
        try:
            return load_documents(data, name)
        except ManifestError as error:
            self.problems.extend(error.problems)
            return ()

    def data_file(self, path: Path) -> str:
        """Return the workspace-relative path of a data file, recording it as an input.

        Raises:
            ValueError: the file is outside the workspace, missing, unreadable or not a
                regular file (a directory, a named pipe, a socket, a device).
        """
        name = self.inside(path, external=True)
        if name is None:
            raise ValueError(
                f"{path.as_posix()} is outside the workspace {self.root} (and its external_folders)"
            )
        if not name.isprintable():  # through a symlink: it would break one-line messages
            raise ValueError(f"{json.dumps(name)}: rename it without line breaks")
        if name not in self.data_files:
            try:
                check_regular(path)
            except UnreadableFile as error:
                raise ValueError(f"{name}: {error}") from None
            self.data_files.add(name)
        return name

    def query_file(self, path: Path) -> tuple[str, str]:
        """Return the workspace-relative path and the text of a query file, a definition.

        Its digest is recorded beside the manifests': a changed query makes a plan stale.

        Raises:
            ValueError: the file is outside the workspace, unreadable, not a regular file,
                too large or not UTF-8 text.
        """
        name = self.inside(path)
        if name is None:
            raise ValueError(f"{path.as_posix()} is outside the workspace {self.root}")
        if not name.isprintable():
            raise ValueError(f"{json.dumps(name)}: rename it without line breaks")
        try:
            data = read_regular(path, MAX_FILE_BYTES + 1)
        except UnreadableFile as error:
            raise ValueError(f"{name}: {error}") from None
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"{name}: is larger than {MAX_FILE_BYTES >> 20} MiB")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"{name}: is not UTF-8 text: save it as UTF-8") from None
        if not text.strip():
            raise ValueError(f"{name}: is empty: write the query in it")
        self.inputs[name] = hashlib.sha256(data).hexdigest()
        return name, text


def _manifest_files(config: Document, files: _Files) -> list[tuple[Path, str]]:
    """Return the manifest files the `manifests` globs match, sorted by relative path."""
    globs = config.data.get("manifests", list(DEFAULT_MANIFEST_GLOBS))
    found: dict[str, Path] = {}
    for index, pattern in enumerate(globs):
        if Path(pattern).is_absolute():
            files.problems.append(config.problem(("manifests", index), "must be relative"))
            continue
        matches = _glob(files.root, pattern)
        if isinstance(matches, str):
            message = f"{pattern!r} is not a glob segops can use{matches}"
            files.problems.append(config.problem(("manifests", index), message))
            continue
        for match in matches:
            name = files.inside(match, external=True)
            if name is None:
                message = (
                    f"matches {match.as_posix()}, which is outside the workspace: list its "
                    "folder in external_folders to share manifests between workspaces"
                )
                files.problems.append(config.problem(("manifests", index), message))
            elif not name.isprintable():  # it would break the one-line messages naming it
                message = f"matches {json.dumps(name)}: rename it without line breaks"
                files.problems.append(config.problem(("manifests", index), message))
            elif not match.is_dir() and name != CONFIG_FILE:  # read_yaml refuses pipes
                found.setdefault(name, match)
    if not found:
        message = f"no manifest file matches {', '.join(globs)}"
        files.problems.append(config.problem(("manifests",), message))
    return [(found[name], name) for name in sorted(found)]


def _glob(root: Path, pattern: str) -> list[Path] | str:
    """Return the paths `pattern` matches under `root`, or why pathlib refuses it."""
    try:
        return list(root.glob(pattern))
    except ValueError as error:  # e.g. "'**' can only be an entire path component"
        return f": {error}"
    except OSError as error:  # e.g. a name longer than the file system allows
        return f": {error.strerror}"
    except (IndexError, NotImplementedError):  # pathlib's own failures, e.g. on "."
        return ""


def _connections(config: Document, files: _Files) -> Iterator[Connection]:
    for name, raw in config.data["connections"].items():
        platform = Platform(raw["platform"])
        target = Platform(raw["target"]) if platform == Platform.FILES else platform
        spec, target_spec = platform_spec(platform), platform_spec(target)
        options: dict[str, Scalar] = {
            **(spec.connection_defaults if spec else {}),
            **(target_spec.target_defaults if target_spec else {}),
        }
        options.update(_flatten({k: v for k, v in raw.items() if k not in ("platform", "target")}))
        if "path" in raw and platform == Platform.FILES:
            options["path"] = files.folder(config, ("connections", name, "path"), raw["path"])
        files.problems.extend(connection_problems(config, name, raw))
        yield Connection(name, platform, target, tuple(sorted(options.items())))


def _flatten(value: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Scalar]]:
    """Yield nested mappings as flat dotted keys; lists become compact JSON text."""
    for key, item in value.items():
        if isinstance(item, dict):
            yield from _flatten(item, f"{prefix}{key}.")
        elif isinstance(item, list):
            yield f"{prefix}{key}", json.dumps(item, sort_keys=True, separators=(",", ":"))
        else:
            yield f"{prefix}{key}", item
