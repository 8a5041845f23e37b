"""The state and its versioned dict form; no I/O.

`format_version` is checked on read: an unknown version fails clearly, and each older
version is brought forward by one upgrade function per step (`_upgrade_v1`).

The dict form is verified on read: each destination entry carries the sha256 of its
canonical JSON with its address (so an entry moved to another address, or pointing at
another snapshot, fails), and the document carries one over its top-level fields and
the entries' digests. A damaged or edited state.json is refused with how to recover.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from segops.errors import StateError
from segops.model import (
    KeyEncoding,
    Platform,
    Settings,
    SnapshotRef,
    SourceRead,
    settings_digest,
)

STATE_FORMAT_VERSION = 2
_SHA256 = re.compile(r"[0-9a-f]{64}")
RECOVER_HINT = (
    "To go back to the state before the last write, run `segops state recover` (it restores "
    "state.json.backup and keeps the damaged file beside it); otherwise restore the state "
    "folder from a copy."
)


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
    # The connection's own platform when the entry was written ("files" for a files
    # connection, else the platform itself; "" in entries of an older segops): a connection
    # that starts sending to the API instead of writing files changes where members live.
    via: str = ""
    # MoEngage accepted the last operations but nothing confirmed them (no callback
    # configured): the platform may hold fewer members than the snapshot.
    unconfirmed: bool = False
    last: LastWrite | None = None  # what wrote the entry last; None in older entries
    # The source bytes and reading whose members the snapshot holds exactly (None: unknown).
    source: SourceRead | None = None

    @property
    def settings_digest(self) -> str:
        return settings_digest(self.settings)

    @property
    def member_count(self) -> int:
        return self.snapshot.count


@dataclass(frozen=True, slots=True)
class LastWrite:
    """What wrote a state entry last: an apply run, an import, a state command. For people."""

    run: str  # "run-000012" for an apply (as its files folder), else the command
    by: str  # apply | import | state mv
    at: str  # ISO 8601, UTC


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
    """Return the canonical, versioned dict form written to state.json, with its digests."""
    data: dict[str, Any] = {
        "format_version": STATE_FORMAT_VERSION,
        "lineage": state.lineage,
        "serial": state.serial,
        "segops_version": state.segops_version,
        "destinations": {d.address: _destination_to_dict(d) for d in state.destinations},
        "resources": dict(state.resources),
    }
    data["digest"] = _document_digest(data)
    return data


def _canonical_digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _entry_digest(address: str, raw: Mapping[str, Any]) -> str:
    body = {k: v for k, v in raw.items() if k != "digest"}
    return _canonical_digest({"address": address, "entry": body})


def _document_digest(data: Mapping[str, Any]) -> str:
    top = {k: v for k, v in data.items() if k not in ("digest", "destinations")}
    entries = {a: e.get("digest") for a, e in data["destinations"].items()}
    return _canonical_digest({**top, "destinations": entries})


def _destination_to_dict(entry: DestinationState) -> dict[str, Any]:
    return dict(_entry_dict(entry))


@functools.lru_cache(maxsize=8192)
def _entry_dict(entry: DestinationState) -> dict[str, Any]:
    # Entries are frozen values: a state write re-serialises only those that changed.
    body = _destination_body(entry)
    return {**body, "digest": _entry_digest(entry.address, body)}


def _destination_body(entry: DestinationState) -> dict[str, Any]:
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
        # Written only when set, so that entries of an older segops keep their digest.
        **({"via": entry.via} if entry.via else {}),
        **({"unconfirmed": True} if entry.unconfirmed else {}),
        **(
            {"last": {"run": entry.last.run, "by": entry.last.by, "at": entry.last.at}}
            if entry.last
            else {}
        ),
        **({"source": _source_to_dict(entry.source)} if entry.source else {}),
    }


def _source_to_dict(read: SourceRead) -> dict[str, Any]:
    return {"pin": read.pin, "reading": read.reading, "skipped": read.skipped, "probe": read.probe}


def _source_from_dict(raw: Any) -> SourceRead | None:
    if raw is None:
        return None
    return SourceRead(
        str(raw["pin"]), str(raw["reading"]), int(raw["skipped"]), str(raw.get("probe", ""))
    )


def state_from_dict(data: Mapping[str, Any], origin: str) -> State:
    """Parse the dict form and check its digests; `origin` names the file in errors."""
    version = data.get("format_version")
    if version == 1:
        data = _upgrade_v1(data, origin)
    elif version != STATE_FORMAT_VERSION:
        raise StateError(
            f"{origin}: format_version {version!r} is not supported by this segops "
            f"(it reads versions 1 to {STATE_FORMAT_VERSION}); upgrade segops"
        )
    _check_digests(data, origin)
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
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(
            f"{origin}: malformed state ({type(exc).__name__}: {exc}). {RECOVER_HINT}"
        ) from None


def _upgrade_v1(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Return a version 1 document as version 2: the same fields, with their digests."""
    destinations = data.get("destinations")
    if not isinstance(destinations, Mapping) or not all(
        isinstance(e, Mapping) for e in destinations.values()
    ):
        raise StateError(f"{origin}: malformed state (destinations is not an object of objects)")
    upgraded: dict[str, Any] = {**data, "format_version": STATE_FORMAT_VERSION}
    upgraded["destinations"] = {
        a: {**e, "digest": _entry_digest(a, e)} for a, e in destinations.items()
    }
    upgraded["digest"] = _document_digest(upgraded)
    return upgraded


def _check_digests(data: Mapping[str, Any], origin: str) -> None:
    destinations = data.get("destinations")
    if not isinstance(destinations, Mapping):
        raise StateError(f"{origin}: malformed state (no destinations object). {RECOVER_HINT}")
    for address, raw in sorted(destinations.items()):
        if not isinstance(raw, Mapping) or raw.get("digest") != _entry_digest(address, raw):
            raise StateError(
                f"{origin}: the entry of {address} does not match its digest: state.json was "
                f"edited or damaged. {RECOVER_HINT}"
            )
    if data.get("digest") != _document_digest(data):
        raise StateError(
            f"{origin}: does not match its digest: state.json was edited or damaged. {RECOVER_HINT}"
        )


def _last(raw: Any) -> LastWrite | None:
    if raw is None:
        return None
    return LastWrite(str(raw["run"]), str(raw["by"]), str(raw["at"]))


def _destination_from_dict(address: str, raw: Mapping[str, Any]) -> DestinationState:
    snap = raw["snapshot"]
    if not isinstance(snap["sha256"], str) or not _SHA256.fullmatch(snap["sha256"]):
        raise ValueError(f"the snapshot digest of {address} is not 64 lowercase hex")
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
        via=str(raw.get("via", "")),
        unconfirmed=raw.get("unconfirmed", False) is True,
        last=_last(raw.get("last")),
        source=_source_from_dict(raw.get("source")),
    )
    if raw.get("settings_digest") not in (None, entry.settings_digest):
        raise ValueError(f"settings_digest of {address} does not match its settings")
    return entry
