"""Frozen value types shared by every stage: workspace, members, plan.

Nothing here does I/O. Collections are tuples sorted by a stable key so that the
same inputs always give the same values, and so the same plan bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

Scalar = str | int | float | bool | None
# Platform-visible settings of one destination, flat dotted keys, sorted by key.
Settings = tuple[tuple[str, Scalar], ...]


class Platform(str):
    """A platform's name: a built-in one (the constants below) or a plugin's.

    Platforms are open: a separately installed package can add one (see
    segops.destinations.registry), so this is a name, not a closed enum.
    """

    __slots__ = ()

    MEDIARITHMICS: ClassVar[Platform]
    MOENGAGE: ClassVar[Platform]
    FILES: ClassVar[Platform]  # writes what would be sent instead of calling an API

    @property
    def value(self) -> str:
        return str(self)


Platform.MEDIARITHMICS = Platform("mediarithmics")
Platform.MOENGAGE = Platform("moengage")
Platform.FILES = Platform("files")


class IdentifierKind(StrEnum):
    """What a member's key is on the platform; each kind has its own value rules."""

    USER_ACCOUNT_ID = "user_account_id"
    EMAIL_HASH = "email_hash"
    USER_AGENT_ID = "user_agent_id"
    ATTRIBUTE = "attribute"  # MoEngage: the value of a user attribute (attribute_name)


# Hash formats a manifest may declare for an identifier: lowercase hex of this many characters.
HASH_FORMATS: Mapping[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
# Longest identifier accepted when no hash format pins the length.
MAX_IDENTIFIER_LENGTH = 256
# Per-member attributes a destination may send, in their fixed order.
ATTRIBUTES = ("data_bag", "expiration_ts")


class SourceKind(StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"
    PARQUET = "parquet"
    INLINE = "inline"
    SQL = "sql"  # the result of a query on a database (segops.yaml `sources`)


class OnBadRows(StrEnum):
    ERROR = "error"  # the first bad rows are reported with their line, nothing is planned
    SKIP = "skip"  # bad rows are left out and counted in the plan


class KeyEncoding(StrEnum):
    """How member keys are stored: hashes as raw bytes (half the size), the rest as text."""

    HEX = "hex"
    TEXT = "text"


class DiffMode(StrEnum):
    """How the member engine pairs desired members with applied ones."""

    MERGE = "merge"  # add new keys, remove gone keys, update changed attributes
    REFRESH = (
        "refresh"  # as MERGE, and every kept member is sent again (a per-command setting changed)
    )
    REPLACE = "replace"  # nothing pairs: remove every applied member, add every desired one
    # Desired against nothing: every desired member is an add and none is removed. For a
    # platform that had none of the applied members (a files connection now sends to the
    # API), and for a MoEngage resync, whose first file replaces the segment's users.
    FULL = "full"


class Action(StrEnum):
    """What a plan does to one destination."""

    CREATE = "create"
    ADD = "add"
    REMOVE = "remove"
    UPDATE = "update"
    RECREATE = "recreate"
    DESTROY = "destroy"
    MOVE = "move"  # the applied entry moves to this address (a rename): the state is re-keyed
    NO_OP = "no-op"


@functools.lru_cache(maxsize=65_536)  # state files re-check every entry on each read
def settings_digest(settings: Settings) -> str:
    """Return the sha256 of the canonical JSON of `settings`."""
    text = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Connection:
    """A named way to reach a platform, from segops.yaml."""

    name: str
    platform: Platform
    # The API whose requests are produced: the platform itself, or for `files` the one it imitates.
    target: Platform
    options: tuple[tuple[str, Scalar], ...] = ()

    def option(self, key: str, default: Scalar = None) -> Scalar:
        return dict(self.options).get(key, default)


@dataclass(frozen=True, slots=True)
class Identifier:
    kind: IdentifierKind
    column: str
    format: str | None = None  # a key of HASH_FORMATS
    attribute_name: str | None = None  # MoEngage only
    attribute_type: str | None = None  # MoEngage only: string | double
    # Whole numbers in the source (NDJSON/inline numbers, Parquet integer columns) are accepted
    # and sent as their decimal digits; without it a number is a bad row, never converted.
    integers: bool = False

    @property
    def encoding(self) -> KeyEncoding:
        return KeyEncoding.HEX if self.format else KeyEncoding.TEXT


@dataclass(frozen=True, slots=True)
class InlineObject:
    """An object (mapping) written as a value of an inline member, as compact JSON text.

    Kept apart from a string that holds the same text, so that an object is never taken for
    an identifier.
    """

    json: str


# A value of an inline member, as the manifest wrote it.
InlineValue = Scalar | InlineObject


@dataclass(frozen=True, slots=True)
class Source:
    """Where a segment's members come from."""

    kind: SourceKind
    manifest: str  # workspace-relative path of the manifest that declares it
    line: int
    path: str | None = None  # workspace-relative posix path of the data file
    # Inline members: one row per member as sorted (column, value) pairs, with its YAML line.
    rows: tuple[tuple[tuple[str, InlineValue], ...], ...] = ()
    row_lines: tuple[int, ...] = ()
    delimiter: str = ","
    on_bad_rows: OnBadRows = OnBadRows.ERROR
    # Objects on object storage instead of a file: an s3:// URL whose key may hold globs.
    url: str | None = None
    hive_partitioning: bool = False  # key=value folders of `url` become columns
    # The segops.yaml `sources` entry read through: object storage (optional) or a database.
    connection: str | None = None
    query: str | None = None  # SQL: the query's text, from the manifest or `query_file`
    query_file: str | None = None  # SQL: workspace-relative path of the query's file

    @property
    def name(self) -> str:
        """Return what messages call the source: its file, URL, query or manifest."""
        if self.url:
            return self.url
        if self.kind is SourceKind.SQL:
            return self.query_file or f"the query of {self.manifest}"
        return self.path or self.manifest


class SourceConnectionKind(StrEnum):
    """What a segops.yaml `sources` entry reaches."""

    S3 = "s3"  # S3 or S3-compatible object storage
    POSTGRES = "postgres"  # a PostgreSQL database
    SPARK = "spark"  # the Spark engine's own session: `sql` sources are Spark SQL queries


@dataclass(frozen=True, slots=True)
class SourceConnection:
    """A named place source data is read from (segops.yaml `sources`); never a secret.

    Object storage takes its credentials from the standard AWS chain; a database names the
    environment variable that holds its DSN (`dsn_env`).
    """

    name: str
    kind: SourceConnectionKind
    region: str | None = None
    endpoint_url: str | None = None
    dsn_env: str | None = None


@dataclass(frozen=True, slots=True)
class SharedFolder:
    """Where on S3 this machine and the Spark engine's executors meet: the state's prefix.

    Executors read the state's snapshots (`snapshot_object`), and the engine exchanges
    Parquet files with them in a folder of its own under `url` (deleted when the command
    ends). Credentials: each machine's own AWS chain.
    """

    url: str  # s3://bucket/prefix/work: the scratch folders of commands under way
    connection: SourceConnection  # the storage's endpoint and region
    # the s3:// URL of the object a verified local snapshot copy came from (or was written
    # to), when the object is still that version; None otherwise
    snapshot_object: Callable[[Path], str | None]


@dataclass(frozen=True, slots=True)
class Destination:
    """One segment on one platform: the unit that is planned, applied and kept in state."""

    segment: str
    name: str  # unique within the segment; defaults to the connection name
    connection: Connection
    identifier: Identifier
    settings: Settings
    source: Source
    manifest: str
    line: int
    data_bag_column: str | None = None
    expiration_ts_column: str | None = None

    @property
    def address(self) -> str:
        return f"{self.segment}.{self.name}"

    @property
    def platform(self) -> Platform:
        return self.connection.target

    @property
    def attributes(self) -> tuple[str, ...]:
        """Return the per-member attributes this destination sends, in their fixed order."""
        present = (self.data_bag_column, self.expiration_ts_column)
        return tuple(a for a, col in zip(ATTRIBUTES, present, strict=True) if col)


@dataclass(frozen=True, slots=True)
class Safety:
    """Safety rules: from segops.yaml `safety`, overridable per manifest (`spec.safety`)."""

    max_removal_fraction: float = 0.25  # a destination may not lose more than this share
    max_removals: int | None = None  # nor more than this many members (None: no count limit)
    # An empty source removes nothing, and creates no empty destination, unless this is true.
    allow_empty_source: bool = False

    def merged(self, overrides: Mapping[str, Scalar]) -> Safety:
        """Return these rules with the keys of `overrides` replaced."""
        fraction = overrides.get("max_removal_fraction", self.max_removal_fraction)
        count = overrides.get("max_removals", self.max_removals)
        empty = overrides.get("allow_empty_source", self.allow_empty_source)
        return Safety(
            float(fraction if fraction is not None else self.max_removal_fraction),
            None if count is None else int(count),
            bool(empty),
        )


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    manifest: str
    line: int
    source: Source
    destinations: tuple[Destination, ...]
    description: str = ""
    owner: str = ""
    safety: Safety = field(
        default_factory=Safety
    )  # the workspace rules with this manifest's overrides


@dataclass(frozen=True, slots=True)
class InputFile:
    """A definition a plan was made from (segops.yaml, a manifest), with its sha256."""

    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class DataPin:
    """The data one segment's source read, pinned; it may refresh between review and apply."""

    segment: str
    # what was read: a workspace-relative data file, an s3:// object, or "sql:<connection>"
    source: str
    # "<kind>:<value>": "blake3:<hex>" for a file's bytes, "s3:etag=<etag>,size=<bytes>" for
    # an object, "result:<rows>:<hex>" for a query's result (an order-independent digest)
    pin: str


@dataclass(frozen=True, slots=True)
class SourceRead:
    """What an applied snapshot holds exactly: the members of these bytes, read this way.

    Recorded in state only when every member of a diff landed; a plan that finds the same
    pin and reading against that snapshot skips the diff (the digests decide, nothing else).
    """

    pin: str  # the DataPin of the source bytes: "blake3:<hex>"
    reading: str  # sha256 of how the engine reads them (columns, rules, bad-row handling)
    skipped: int = 0  # bad rows left out of those bytes (on_bad_rows: skip)
    # "<size>:<sha256 of the first and last MiB>": a file whose probe differs cannot have the
    # pin, so the plan diffs at once instead of waiting for the whole file's digest.
    probe: str = ""


class EngineKind(StrEnum):
    """Which member engine computes diffs (segops.yaml `engine.kind`)."""

    DUCKDB = "duckdb"
    SPARK = "spark"


_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SIZE_UNITS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def size_bytes(text: str) -> int | None:
    """Return the bytes of a size such as "1.25GB" or "512 MiB"; None when it is none."""
    found = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?) ?([KMGT]?i?B)", text)
    if found is None or found[2] not in _SIZE_UNITS:
        return None
    return int(Decimal(found[1]) * _SIZE_UNITS[found[2]])


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """segops.yaml `engine`: DuckDB's limits, and the Spark cluster when `kind` is spark."""

    # Past about 1.2 GB of hash table, 10 million hashes no longer fit and the join partitions
    # (measured: 3.2 s at 1GB, 2.8 s at 1.25GB); peak RSS stays near 1.1 GB either way.
    memory_limit: str = "1.25GB"
    threads: int | None = None  # None: DuckDB's default, one per core
    kind: EngineKind = EngineKind.DUCKDB
    master: str | None = None  # a Spark master URL (local[*], spark://..., yarn, k8s://...)
    remote: str | None = None  # a Spark Connect URL (sc://host:port)
    conf: tuple[tuple[str, str], ...] = ()  # Spark settings, sorted by name


@dataclass(frozen=True, slots=True)
class S3StateSettings:
    """Where an S3 state lives (segops.yaml `state:` with `backend: s3`); no credentials."""

    bucket: str
    prefix: str = "segops"
    region: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True, slots=True)
class MovedBlock:
    """segops.yaml `moved: [{from, to}]`: the state of address `old` belongs to `new` now."""

    old: str
    new: str
    line: int = 0  # of the block in segops.yaml


@dataclass(frozen=True, slots=True)
class Workspace:
    """A loaded, validated workspace; `root` is the only path that is not workspace-relative."""

    root: str
    connections: tuple[Connection, ...]
    segments: tuple[Segment, ...]
    # segops.yaml and the manifests, with their digests (they are read anyway)
    inputs: tuple[InputFile, ...]
    state_backend: str = "local"
    state_path: str = ".segops"
    state_s3: S3StateSettings | None = None  # with state_backend "s3"
    engine: EngineConfig = field(default_factory=EngineConfig)
    # Every source data file, workspace-relative. A plan pins those of its own segments
    # (segops.planning.inputs, from each segment's source), beside the member diff.
    data_files: tuple[str, ...] = ()
    safety: Safety = field(default_factory=Safety)  # rules for destinations no manifest names
    # segops.yaml `sources`: object storage and databases that sources read, by name
    source_connections: tuple[SourceConnection, ...] = ()

    def source_connection(self, name: str) -> SourceConnection | None:
        return next((c for c in self.source_connections if c.name == name), None)

    moved: tuple[MovedBlock, ...] = ()

    environment: str = ""  # segops.yaml's environment this workspace was loaded for ("": none)

    @property
    def destinations(self) -> tuple[Destination, ...]:
        return tuple(
            sorted((d for s in self.segments for d in s.destinations), key=lambda d: d.address)
        )

    def connection(self, name: str) -> Connection | None:
        return next((c for c in self.connections if c.name == name), None)


@dataclass(frozen=True, slots=True)
class MemberCounts:
    """Member counts of one destination change; `skipped` are bad source rows left out."""

    before: int = 0
    after: int = 0
    add: int = 0
    remove: int = 0
    update: int = 0
    skipped: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.add or self.remove or self.update)


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One row of a destination's member delta, as the engine yields it to apply."""

    op: str  # "add" | "remove" | "update"
    key: str  # the identifier value exactly as sent
    data_bag: str | None = None  # compact JSON object text
    expiration_ts: int | None = None  # epoch milliseconds
    index: int = -1  # position in the delta file (0-based); batches are ranges of it


@dataclass(frozen=True, slots=True)
class DeltaFile:
    """The member delta of one destination, a Parquet file named by its digest."""

    sha256: str
    rows: int

    @property
    def name(self) -> str:
        return f"{self.sha256}.parquet"


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """The applied members of one destination, as recorded in state."""

    sha256: str
    count: int
    encoding: KeyEncoding
    attributes: tuple[str, ...] = ()  # per-member attribute columns stored beside the key

    @property
    def name(self) -> str:
        return f"{self.sha256}.parquet"


@dataclass(frozen=True, slots=True)
class DiffRequest:
    """What the member engine must compare for one destination."""

    address: str
    mode: DiffMode
    desired: Destination | None  # None: nothing is desired any more (destroy)
    applied: SnapshotRef | None  # None: nothing was applied yet (create)


@dataclass(frozen=True, slots=True)
class DiffResult:
    address: str
    counts: MemberCounts
    delta: DeltaFile | None  # None when there is nothing to send


@dataclass(frozen=True, slots=True)
class SettingChange:
    path: str
    before: Scalar
    after: Scalar
    effect: str  # "recreate" | "refresh" | "in-place"


@dataclass(frozen=True, slots=True)
class GuardTrip:
    """A safety guard that stops this change unless an override names its segment."""

    guard: str  # empty-source | max-removal-fraction | max-removals | no-state-only-adds
    message: str  # plain words for the reviewer: what would happen and which limit it passes


@dataclass(frozen=True, slots=True)
class DestinationChange:
    """The planned change of one destination: everything apply needs, and why."""

    address: str
    segment: str
    connection: str
    platform: Platform
    actions: tuple[Action, ...]
    settings_before: Settings | None
    settings_after: Settings | None
    setting_changes: tuple[SettingChange, ...]
    members: MemberCounts
    delta: DeltaFile | None
    encoding: KeyEncoding
    reason: str = ""  # why a recreate or destroy happens, for people
    attributes: tuple[str, ...] = ()  # per-member attributes kept in the new snapshot
    # sha256 of the applied snapshot the change was computed against ("" when none): with the
    # delta digest it names the change, so journal entries of another base never match.
    base: str = ""
    operations: int = 0  # API calls (executions, file operations) the change takes
    eta: str = ""  # MoEngage: when the quota lets the last operation go out, for people
    guards: tuple[GuardTrip, ...] = ()  # tripped safety guards; apply refuses the change
    # The address whose applied entry this change takes over ("": none): a rename, found by
    # the platform segment both name, or a `moved` block. Apply re-keys the state entry.
    moved_from: str = ""
    # The delta holds every desired member against nothing (DiffMode.FULL): the new snapshot
    # is its confirmed rows alone, and MoEngage replaces the segment's users with them.
    full: bool = False
    notes: tuple[str, ...] = ()  # what the reviewer should know, in plain words (display only)

    @property
    def action(self) -> Action:
        """Return the headline action, the most consequential of `actions`."""
        for action in (Action.DESTROY, Action.RECREATE, Action.CREATE):
            if action in self.actions:
                return action
        if self.actions in ((Action.NO_OP,), (Action.MOVE,)):
            return self.actions[0]
        return Action.UPDATE

    @property
    def is_change(self) -> bool:
        return self.actions != (Action.NO_OP,)


# 2: inputs split into definitions (pinned strictly) and data pins per segment.
# 3: moves (moved_from, action "move"), full resends, notes; destroy and replace requests.
PLAN_FORMAT_VERSION = 3


@dataclass(frozen=True, slots=True)
class Plan:
    """A complete, immutable plan: what apply sends and what it was computed from."""

    segops_version: str
    lineage: str | None  # the state's lineage; None when there was no state yet
    serial: int  # the state serial the plan was computed against (0: no state)
    # What the planned segments were made from: definitions must not move before apply,
    # data may (apply then diffs the segments whose data moved again, behind the guards).
    definitions: tuple[InputFile, ...]
    data: tuple[DataPin, ...]
    changes: tuple[DestinationChange, ...]
    format_version: int = PLAN_FORMAT_VERSION
    # the --segment/--exclude/--target/--changed-since that narrowed it; "" = all
    selection: str = ""
    destroy: bool = False  # made with --destroy: every selected destination is destroyed
    replace: tuple[str, ...] = ()  # addresses whose whole membership is sent again (--replace)

    @property
    def has_changes(self) -> bool:
        return any(c.is_change for c in self.changes)

    @property
    def tripped(self) -> tuple[DestinationChange, ...]:
        """Return the changes a safety guard stops."""
        return tuple(c for c in self.changes if c.guards)
