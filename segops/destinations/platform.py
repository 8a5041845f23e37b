"""The platform contract: everything segops needs from a platform, in one object.

A platform (built in, or a separately installed package: see `registry`) is a subclass
of `PlatformSpec`, instantiated once. Each stage asks it only what that stage needs:

- config: the keys its connections and destinations take (`connection_schema`,
  `destination_schema`, both JSON Schema per key), the secrets a connection names,
  and how a manifest destination becomes an identifier and flat settings
  (`destination`, `destination_problems`);
- planning: which settings name where members live (`identity_settings`: a change
  recreates), which ones every command carries (`refresh_settings`: a change resends
  every member), the platform segment a destination writes to (`segment_keys`), and how
  many API operations a change takes (`estimator`);
- apply: `open` returns the `Destination` that sends a change; `write_files` writes what
  would be sent, for `files` connections that target this platform.

Everything here is imported when a workspace is loaded, so a spec imports nothing heavy:
`open` and `write_files` import their clients when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from segops.model import (
    Connection,
    DestinationChange,
    DiffMode,
    Identifier,
    MemberRow,
    Scalar,
    Settings,
)

if TYPE_CHECKING:  # the apply-time types, only for annotations
    from segops.destinations import ApplyContext, Destination, Records, Sent
    from segops.destinations.atomic import AtomicFiles

# A key path inside one manifest destination, e.g. ("identifier", "kind").
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class DestinationParts:
    """What a manifest destination means for the engine and the planner."""

    identifier: Identifier
    settings: Settings  # flat dotted keys, platform-visible; `connection` always among them
    data_bag_column: str | None = None
    expiration_ts_column: str | None = None


class Estimator(Protocol):
    def estimate(self, change: DestinationChange) -> tuple[int, str]:
        """Return (API operations the change takes, when the last can go out: "" for now)."""
        ...


@runtime_checkable
class RowsEstimator(Protocol):
    """An estimator whose count can depend on the delta's rows (e.g. on their byte sizes)."""

    def estimate_rows(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]] | None
    ) -> tuple[int, str]:
        """Return what `estimate` does, reading `rows()` (the delta) when it needs them."""
        ...


@dataclass(frozen=True, slots=True)
class FilesOut:
    """Where and how a `files` connection writes what a platform would receive."""

    folder: Path  # this run's folder; the platform picks its own sub-folders
    files: AtomicFiles  # every file goes through it: all appear at once, fsynced
    connection: Connection  # the files connection (its options: mime_type, callback_url...)
    run: str
    max_file_bytes: int | None = None  # cap on one member file; None: the platform's own


class PlatformSpec:
    """A platform; subclass it and override what differs (see the module docstring)."""

    name: ClassVar[str] = ""  # as written in segops.yaml `platform:`
    title: ClassVar[str] = ""  # for people, e.g. "MoEngage"
    # JSON Schema of each connection key besides `platform` (the built-in platforms have
    # theirs in schemas/segops.schema.json; a plugin declares its own here).
    connection_schema: ClassVar[Mapping[str, Any]] = {}
    connection_required: ClassVar[tuple[str, ...]] = ()
    # Options a connection of this platform gets when segops.yaml leaves them out.
    connection_defaults: ClassVar[Mapping[str, Scalar]] = {}
    # Options a `files` connection targeting this platform gets when left out.
    target_defaults: ClassVar[Mapping[str, Scalar]] = {}
    # (connection option that names an environment variable, what the variable holds)
    secrets: ClassVar[tuple[tuple[str, str], ...]] = ()
    # JSON Schema of each manifest destination key this platform takes (the built-in
    # platforms: in schemas/segment.schema.json, and only their names here).
    destination_schema: ClassVar[Mapping[str, Any]] = {}
    destination_keys: ClassVar[tuple[str, ...]] = ()
    destination_required: ClassVar[tuple[str, ...]] = ()
    # Why a key of this platform is wrong elsewhere, when there is more to say.
    key_hints: ClassVar[Mapping[str, str]] = {}
    identity_settings: ClassVar[frozenset[str]] = frozenset({"connection"})
    refresh_settings: ClassVar[frozenset[str]] = frozenset()
    # How `--replace ADDRESS` resends a destination: REFRESH (every desired member sent again,
    # and the removes the state knows of) or FULL (every desired member against nothing, for
    # a platform that replaces a segment's members in one call).
    resync_mode: ClassVar[DiffMode] = DiffMode.REFRESH

    @property
    def keys(self) -> tuple[str, ...]:
        """Return every destination key this platform owns."""
        return tuple(dict.fromkeys((*self.destination_keys, *self.destination_schema)))

    # -- config ----------------------------------------------------------------------

    def connection_problems(self, raw: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
        """Return problems of a schema-checked connection of this platform (key path, what)."""
        return []

    def destination_problems(self, raw: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
        """Return problems of a schema-checked destination beyond its required keys."""
        return []

    def destination(self, raw: Mapping[str, Any]) -> DestinationParts:
        """Return the identifier and settings of a checked manifest destination."""
        raise NotImplementedError

    def segment_keys(self, settings: Mapping[str, Scalar]) -> list[tuple[str, ...]]:
        """Return keys naming the platform segment a destination writes to.

        Two destinations sharing a key write the same platform segment. A key is the
        platform name, then ``name=value`` parts, which the message about two manifests
        sharing a segment shows (e.g. ``connection 'mics', datamart_id '1509'``).
        """
        identity = sorted(k for k in self.identity_settings if k in settings)
        return [(self.name, *(f"{k}={settings[k]}" for k in identity))]

    # -- planning --------------------------------------------------------------------

    def known_segment(self, settings: Settings, resources: Mapping[str, str]) -> str:
        """Return why the platform segment of `settings` is known to exist, "" if it is not.

        Planning calls no API: a segment is known when the manifest names it by an id the
        platform made, or when `resources` (platform objects the state remembers) hold it.
        """
        return ""

    def estimator(self, connection: Connection, records: Records, now: float) -> Estimator:
        """Return what counts the API operations of this connection's changes in one plan.

        Called once per plan and connection; may read the platform's `records` kept beside
        the state (quota ledgers). The default: one operation per change.
        """
        return _OnePerChange()

    # -- apply -----------------------------------------------------------------------

    def open(
        self, connection: Connection, secrets: Mapping[str, str], context: ApplyContext
    ) -> Destination:
        """Return the destination that sends this connection's changes."""
        raise NotImplementedError(f"platform {self.name!r} cannot send changes")

    @property
    def writes_files(self) -> bool:
        """Return whether a `files` connection may target this platform."""
        return type(self).write_files is not PlatformSpec.write_files

    def write_files(
        self, change: DestinationChange, rows: Iterable[MemberRow], out: FilesOut
    ) -> Sent | None:
        """Write the requests this platform would receive for `change` under `out.folder`.

        Returns what the files hold when it is not every row given (None: every row).
        """
        raise NotImplementedError(f"platform {self.name!r} has no files form")

    @property
    def writes_batches(self) -> bool:
        """Return whether this platform's files form can be written from Arrow batches."""
        return type(self).write_file_batches is not PlatformSpec.write_file_batches

    def write_file_batches(
        self, change: DestinationChange, batches: Iterable[Any], out: FilesOut
    ) -> Sent | None:
        """Write the same files as `write_files`, from the delta as Arrow record batches.

        Optional: a platform that formats whole columns (pyarrow compute) instead of one
        row at a time overrides it; `batches` have the columns op, key, data_bag,
        expiration_ts and index (see `segops.destinations.DeltaRows`).
        """
        raise NotImplementedError(f"platform {self.name!r} writes files row by row")


class _OnePerChange:
    def estimate(self, change: DestinationChange) -> tuple[int, str]:
        return (1 if change.members.changed else 0), ""


def settings_of(values: Mapping[str, Scalar]) -> Settings:
    """Return settings sorted by key, without the unset ones."""
    return tuple(sorted((k, v) for k, v in values.items() if v is not None))


def keys_present(raw: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k in raw]
