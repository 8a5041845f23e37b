"""Checks the JSON Schema cannot make: they need the connection's target platform or
several manifests at once. Each returns Problems naming file, line and key path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segops.config.documents import Document, KeyPath
from segops.errors import Problem
from segops.model import Connection, Destination, Platform, Segment

# Destination keys each target platform takes; a key of the other platform is refused.
PLATFORM_KEYS: Mapping[Platform, tuple[str, ...]] = {
    Platform.MEDIARITHMICS: (
        "datamart_id",
        "segment_id",
        "segment_technical_name",
        "identifier",
        "compartment_id",
        "expiration_duration",
        "data_bag",
        "expiration_ts",
    ),
    Platform.MOENGAGE: ("segment", "attribute", "expiry_days"),
}
_REQUIRED: Mapping[Platform, tuple[str, ...]] = {
    Platform.MEDIARITHMICS: ("datamart_id", "identifier"),
    Platform.MOENGAGE: ("segment", "attribute"),
}
# Why a key of the other platform is wrong, when there is more to say than "not here".
_HINTS: Mapping[str, str] = {
    "identifier": "; MoEngage identifies members by a user attribute: use attribute: "
    "{name, type, column}",
    "attribute": "; mediarithmics identifies members with identifier: {kind, column}",
}


@dataclass(frozen=True, slots=True)
class Placed:
    """A built destination and its key path in its manifest, e.g. ``spec.destinations[1]``."""

    destination: Destination
    path: str


def target_problems(
    doc: Document, path: KeyPath, raw: Mapping[str, Any], connection: Connection
) -> list[Problem]:
    """Return the problems of destination `raw` for the platform its connection targets."""
    target = connection.target
    other = Platform.MOENGAGE if target is Platform.MEDIARITHMICS else Platform.MEDIARITHMICS
    via = f"connection {connection.name!r} targets {target.value}"
    problems = [
        doc.problem(
            (*path, key),
            f"{key} is for {other.value} destinations, and {via}" + _HINTS.get(key, ""),
        )
        for key in PLATFORM_KEYS[other]
        if key in raw
    ]
    problems += [
        doc.problem(path, f"missing required key {key!r}: {via}")
        for key in _REQUIRED[target]
        if key not in raw
    ]
    if target is Platform.MEDIARITHMICS and not {"segment_id", "segment_technical_name"} & set(raw):
        message = f"missing segment_id or segment_technical_name: {via}"
        problems.append(doc.problem(path, message))
    return problems


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
                    f"{other.address} ({other.manifest}:{other.line})"
                )
                yield Problem(here.manifest, message, here.line, item.path)
                break


def platform_segment_keys(destination: Destination) -> list[tuple[str, ...]]:
    """Return the keys that name the platform segment a destination writes to."""
    settings = {k: str(v) for k, v in destination.settings}
    connection = settings["connection"]
    if destination.platform is Platform.MEDIARITHMICS:
        ref = "segment_id" if "segment_id" in settings else "segment_technical_name"
        return [("mediarithmics", connection, settings["datamart_id"], ref, settings[ref])]
    keys: list[tuple[str, ...]] = [("moengage", connection, "name", settings["segment.name"])]
    if "segment.cs_id" in settings:  # MoEngage ids are unique: the same id is the same segment
        keys.append(("moengage", "cs_id", settings["segment.cs_id"]))
    return keys
