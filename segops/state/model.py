"""The state and its versioned dict form; no I/O.

`format_version` is checked on read: an unknown version fails clearly, and each older
version is brought forward by one upgrade function per step (none yet: version 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from segops.errors import StateError
from segops.model import KeyEncoding, Platform, Settings, SnapshotRef, settings_digest

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class DestinationState:
    """What was applied to one destination address."""

    address: str
    segment: str
    connection: str
    platform: Platform
    settings: Settings
    snapshot: SnapshotRef
    # Operations a platform quota held back: the snapshot lacks their members, so the next
    # plan sends them; these fields only tell people how far along the destination is.
    pending: int = 0
    pending_eta: str = ""

    @property
    def settings_digest(self) -> str:
        return settings_digest(self.settings)

    @property
    def member_count(self) -> int:
        return self.snapshot.count


@dataclass(frozen=True, slots=True)
class State:
    lineage: str
    serial: int
    segops_version: str
    destinations: tuple[DestinationState, ...] = ()
    format_version: int = STATE_FORMAT_VERSION
    # Platform objects segops created and reuses: document imports, segment ids (key -> id).
    resources: tuple[tuple[str, str], ...] = ()

    def get(self, address: str) -> DestinationState | None:
        return next((d for d in self.destinations if d.address == address), None)

    def with_destination(self, entry: DestinationState) -> State:
        """Return a copy with `entry` set at its address."""
        kept = [d for d in self.destinations if d.address != entry.address]
        return replace(self, destinations=tuple(sorted([*kept, entry], key=lambda d: d.address)))

    def without(self, address: str) -> State:
        return replace(
            self, destinations=tuple(d for d in self.destinations if d.address != address)
        )

    def snapshot_digests(self) -> frozenset[str]:
        return frozenset(d.snapshot.sha256 for d in self.destinations)


@dataclass(frozen=True, slots=True)
class LockInfo:
    id: str
    operation: str
    who: str
    pid: int
    created: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "who": self.who,
            "pid": self.pid,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LockInfo:
        return cls(
            str(data["id"]),
            str(data["operation"]),
            str(data["who"]),
            int(data["pid"]),
            str(data["created"]),
        )


def state_to_dict(state: State) -> dict[str, Any]:
    """Return the canonical, versioned dict form written to state.json."""
    return {
        "format_version": state.format_version,
        "lineage": state.lineage,
        "serial": state.serial,
        "segops_version": state.segops_version,
        "destinations": {d.address: _destination_to_dict(d) for d in state.destinations},
        "resources": dict(state.resources),
    }


def _destination_to_dict(entry: DestinationState) -> dict[str, Any]:
    return {
        "segment": entry.segment,
        "connection": entry.connection,
        "platform": entry.platform.value,
        "settings": dict(entry.settings),
        "settings_digest": entry.settings_digest,
        "member_count": entry.member_count,
        "snapshot": {
            "sha256": entry.snapshot.sha256,
            "encoding": entry.snapshot.encoding.value,
            "attributes": list(entry.snapshot.attributes),
        },
        **(
            {"pending": {"operations": entry.pending, "eta": entry.pending_eta}}
            if entry.pending
            else {}
        ),
    }


def state_from_dict(data: Mapping[str, Any], origin: str) -> State:
    """Parse and check the dict form; `origin` names the file in errors."""
    version = data.get("format_version")
    if version != STATE_FORMAT_VERSION:
        raise StateError(
            f"{origin}: format_version {version!r} is not supported by this segops "
            f"(it reads version {STATE_FORMAT_VERSION}); upgrade segops"
        )
    try:
        entries = tuple(
            _destination_from_dict(address, raw)
            for address, raw in sorted(data["destinations"].items())
        )
        resources = tuple(sorted((str(k), str(v)) for k, v in data.get("resources", {}).items()))
        return State(
            str(data["lineage"]),
            int(data["serial"]),
            str(data["segops_version"]),
            entries,
            resources=resources,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{origin}: malformed state ({type(exc).__name__}: {exc})") from None


def _destination_from_dict(address: str, raw: Mapping[str, Any]) -> DestinationState:
    snap = raw["snapshot"]
    settings: Settings = tuple(sorted(raw["settings"].items()))
    entry = DestinationState(
        address=address,
        segment=str(raw["segment"]),
        connection=str(raw["connection"]),
        platform=Platform(raw["platform"]),
        settings=settings,
        snapshot=SnapshotRef(
            str(snap["sha256"]),
            int(raw["member_count"]),
            KeyEncoding(snap["encoding"]),
            tuple(snap.get("attributes", ())),
        ),
        pending=int(raw.get("pending", {}).get("operations", 0)),
        pending_eta=str(raw.get("pending", {}).get("eta", "")),
    )
    if raw.get("settings_digest") not in (None, entry.settings_digest):
        raise ValueError(f"settings_digest of {address} does not match its settings")
    return entry
