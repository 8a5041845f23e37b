"""Checks the JSON Schema cannot make: they need the connection's target platform or
several manifests at once. Each returns Problems naming file, line and key path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segops.config.documents import Document, KeyPath
from segops.destinations.registry import (
    all_platforms,
    platform_names,
    platform_spec,
    plugin_platforms,
)
from segops.errors import Problem
from segops.model import Connection, Destination, Platform, Segment, size_bytes

# DuckDB's memory_limit, in bytes. Under 64 MB its readers cannot allocate their buffers
# (an NDJSON source needs 32 MiB at once); 32 TiB is the memory of the largest single
# machines sold. A fixed cap, not this machine's memory: a segops.yaml is valid or not
# wherever it is checked (a CI runner and a laptop agree), and past the cap DuckDB's own
# parser fails ("Memory value out of range") with a traceback.
MEMORY_LIMIT_RANGE = (64_000_000, 32 * 2**40)


@dataclass(frozen=True, slots=True)
class Placed:
    """A built destination and its key path in its manifest, e.g. ``spec.destinations[1]``."""

    destination: Destination
    path: str


def target_problems(
    doc: Document, path: KeyPath, raw: Mapping[str, Any], connection: Connection
) -> list[Problem]:
    """Return the problems of destination `raw` for the platform its connection targets."""
    spec = platform_spec(connection.target)
    via = f"connection {connection.name!r} targets {connection.target}"
    if spec is None or connection.target == Platform.FILES:
        return [doc.problem((*path, "connection"), f"{via}, which takes no destinations")]
    problems = []
    for other in all_platforms().values():
        if other.name == spec.name:
            continue
        for key in other.keys:
            if key in raw and key not in spec.keys:
                hint = spec.key_hints.get(key, "")
                message = f"{key} is for {other.name} destinations, and {via}{hint}"
                problems.append(doc.problem((*path, key), message))
    problems += [
        doc.problem(path, f"missing required key {key!r}: {via}")
        for key in spec.destination_required
        if key not in raw
    ]
    problems += [
        doc.problem((*path, *where), f"{message}: {via}")
        for where, message in spec.destination_problems(raw)
    ]
    return problems


def connection_problems(config: Document, name: str, raw: Mapping[str, Any]) -> list[Problem]:
    """Return problems the schema cannot see in one connection: keys of installed platforms.

    The packaged schema knows the built-in platforms; a plugin's keys are checked here
    against the platform that owns them.
    """
    spec = platform_spec(str(raw["platform"]))
    path = ("connections", name)
    if spec is None:
        known = ", ".join(platform_names())
        message = f"unknown platform {raw['platform']!r}; installed platforms: {known}"
        return [config.problem((*path, "platform"), message)]
    problems = [
        config.problem((*path, *where), message) for where, message in spec.connection_problems(raw)
    ]
    for other in plugin_platforms().values():
        for key in other.connection_schema:
            if key in raw and key not in spec.connection_schema and other.name != spec.name:
                message = f"only {other.name} connections take this key"
                problems.append(config.problem((*path, key), message))
    if spec.name in plugin_platforms():
        allowed = {"platform", *spec.connection_schema}
        for key in sorted(set(raw) - allowed):
            message = f"unknown key {key!r} for a {spec.name} connection; allowed keys: " + (
                ", ".join(sorted(allowed))
            )
            problems.append(config.problem((*path, key), message))
        problems += [
            config.problem(path, f"missing required key {key!r}")
            for key in spec.connection_required
            if key not in raw
        ]
    return problems


def engine_problems(config: Document) -> list[Problem]:
    """Return the problems of the schema-checked `engine`: a memory_limit out of range, Spark
    keys (or a spark source) without `kind: spark`, both a master and a remote, a secret in
    the remote URL."""
    engine = config.data.get("engine", {})
    problems = _memory_limit_problems(config, engine.get("memory_limit"))
    spark_keys = [key for key in ("master", "remote", "conf") if key in engine]
    if engine.get("kind", "duckdb") != "spark":
        problems += [
            config.problem(("engine", key), "is read only with `kind: spark`") for key in spark_keys
        ]
    elif "master" in engine and "remote" in engine:
        message = "give a master URL or a Spark Connect remote, not both"
        problems.append(config.problem(("engine", "remote"), message))
    if engine.get("kind", "duckdb") != "spark":
        for name, raw in sorted(config.data.get("sources", {}).items()):
            if raw.get("type") == "spark":
                message = (
                    "a spark source runs its queries on the Spark engine: "
                    "set `engine: {kind: spark}` (with a master or a remote)"
                )
                problems.append(config.problem(("sources", name, "type"), message))
    remote = engine.get("remote")
    if isinstance(remote, str) and ";" in remote:
        message = (
            "holds parameters (`;token=...`, `;user_id=...`): a token is a secret; segops adds "
            "it from the environment variable SEGOPS_SPARK_TOKEN"
        )
        problems.append(config.problem(("engine", "remote"), message))
    return problems


def _memory_limit_problems(config: Document, text: object) -> list[Problem]:
    size = size_bytes(text) if isinstance(text, str) else None
    if size is None:  # absent, or refused by the schema already
        return []
    low, high = MEMORY_LIMIT_RANGE
    if low <= size <= high:
        return []
    message = f"must be a size from 64MB to 32TiB; got {text!r}"
    return [config.problem(("engine", "memory_limit"), message)]


def cross_check(segments: Sequence[Segment], placed: Sequence[Placed]) -> list[Problem]:
    """Return the problems between manifests: reused segment names and platform segments."""
    return [*_duplicate_segments(segments), *_shared_platform_segments(placed)]


def _duplicate_segments(segments: Sequence[Segment]) -> Iterator[Problem]:
    first: dict[str, Segment] = {}
    for segment in sorted(segments, key=lambda s: (s.manifest, s.line)):
        other = first.setdefault(segment.name, segment)
        if other is not segment:
            message = (
                f"segment {segment.name!r} is already defined at {other.manifest}:{other.line}"
            )
            yield Problem(segment.manifest, message, segment.line, "metadata.name")


def _shared_platform_segments(placed: Sequence[Placed]) -> Iterator[Problem]:
    """Two destinations that write the same platform segment would undo each other."""
    first: dict[tuple[str, ...], Destination] = {}
    for item in sorted(placed, key=lambda p: (p.destination.manifest, p.destination.line)):
        here = item.destination
        for key in platform_segment_keys(here):
            other = first.setdefault(key, here)
            if other is not here:
                message = (
                    f"{here.address} sends to the same {here.platform.value} segment as "
                    f"{other.address} ({other.manifest}:{other.line}): {_describe_key(key)}"
                )
                yield Problem(here.manifest, message, here.line, item.path)
                break


def _describe_key(key: tuple[str, ...]) -> str:
    """Return the parts of a platform segment key, e.g. ``connection 'mics', datamart_id '1509'``.

    Parts are ``name=value`` (see PlatformSpec.segment_keys); other parts are shown as they are.
    """
    shown = []
    for part in key[1:]:
        name, sep, value = part.partition("=")
        shown.append(f"{name} {value!r}" if sep else repr(part))
    return ", ".join(shown)


def platform_segment_keys(destination: Destination) -> list[tuple[str, ...]]:
    """Return the keys that name the platform segment a destination writes to."""
    spec = platform_spec(destination.platform)
    settings = dict(destination.settings)
    return spec.segment_keys(settings) if spec else [(destination.platform, destination.address)]
