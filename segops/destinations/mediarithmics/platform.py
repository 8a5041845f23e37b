"""mediarithmics as segops sees it: keys, settings, identity, operation counts, and opening.

Light on purpose (it is read whenever a workspace is loaded): the client, the batching and
the command files are imported only by `open` and `write_files`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from segops.destinations.platform import (
    DestinationParts,
    FilesOut,
    KeyPath,
    PlatformSpec,
    settings_of,
)
from segops.model import (
    Connection,
    DestinationChange,
    Identifier,
    IdentifierKind,
    MemberRow,
    Scalar,
    Settings,
)

if TYPE_CHECKING:
    from segops.destinations import ApplyContext, Destination, Records, Sent

DEFAULT_BASE_URL = "https://api.mediarithmics.com"
DEFAULT_BATCH_LINES = 500_000
DEFAULT_BATCH_BYTES = 50_000_000
SEGMENT_REFS = ("segment_id", "segment_technical_name")


class MediarithmicsPlatform(PlatformSpec):
    name = "mediarithmics"
    title = "mediarithmics"
    connection_defaults = {"base_url": DEFAULT_BASE_URL}
    target_defaults = {"mime_type": "APPLICATION_X_NDJSON"}
    secrets = (("token_env", "API token"),)
    destination_keys = (
        "datamart_id",
        "segment_id",
        "segment_technical_name",
        "identifier",
        "compartment_id",
        "expiration_duration",
        "data_bag",
        "expiration_ts",
    )
    destination_required = ("datamart_id", "identifier")
    key_hints = {"attribute": "; mediarithmics identifies members with identifier: {kind, column}"}
    identity_settings = frozenset(
        {
            "connection",
            "datamart_id",
            "segment_id",
            "segment_technical_name",
            "identifier.kind",
            "identifier.format",
            "compartment_id",
        }
    )
    # Every command line carries it: a change means every member is sent again.
    refresh_settings = frozenset({"expiration_duration"})

    def destination_problems(self, raw: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
        if not any(ref in raw for ref in SEGMENT_REFS):
            return [((), "missing segment_id or segment_technical_name")]
        return []

    def destination(self, raw: Mapping[str, Any]) -> DestinationParts:
        spec = raw["identifier"]
        kind = IdentifierKind(spec["kind"])
        identifier = Identifier(
            kind,
            spec.get("column", kind.value),
            spec.get("format"),
            integers=bool(spec.get("integers", False)),
        )
        settings = settings_of(
            {
                "connection": raw["connection"],
                "datamart_id": raw["datamart_id"],
                "segment_id": raw.get("segment_id"),
                "segment_technical_name": raw.get("segment_technical_name"),
                "identifier.kind": kind.value,
                "identifier.format": identifier.format,
                "compartment_id": raw.get("compartment_id"),
                "expiration_duration": int(raw.get("expiration_duration", 0)),
            }
        )
        return DestinationParts(
            identifier,
            settings,
            data_bag_column=raw.get("data_bag", {}).get("column"),
            expiration_ts_column=raw.get("expiration_ts", {}).get("column"),
        )

    def segment_keys(self, settings: Mapping[str, Scalar]) -> list[tuple[str, ...]]:
        ref = "segment_id" if "segment_id" in settings else "segment_technical_name"
        names = ("connection", "datamart_id", ref)
        return [(self.name, *(f"{name}={settings[name]}" for name in names))]

    def known_segment(self, settings: Settings, resources: Mapping[str, str]) -> str:
        segment_id = dict(settings).get("segment_id")
        return f"segment_id {segment_id} is an id mediarithmics gave it" if segment_id else ""

    def estimator(self, connection: Connection, records: Records, now: float) -> _Executions:
        return _Executions(connection)

    def open(
        self, connection: Connection, secrets: Mapping[str, str], context: ApplyContext
    ) -> Destination:
        from segops.destinations.http import RetryPolicy
        from segops.destinations.mediarithmics.destination import (
            MediarithmicsDestination,
            make_mediarithmics_client,
        )

        policy = RetryPolicy.from_connection(connection)
        token = secrets["token_env"]
        client = context.shared(
            "client", lambda: make_mediarithmics_client(connection, token, policy)
        )
        return MediarithmicsDestination(connection, client, context, policy)

    def write_files(
        self, change: DestinationChange, rows: Iterable[MemberRow], out: FilesOut
    ) -> Sent | None:
        from segops.destinations.mediarithmics.files import write_commands

        write_commands(change, rows, out)
        return None

    def write_file_batches(
        self, change: DestinationChange, batches: Iterable[Any], out: FilesOut
    ) -> Sent | None:
        from segops.destinations.mediarithmics.files import write_command_batches

        write_command_batches(change, batches, out)
        return None


class _Executions:
    """One execution per batch, counted by the same rule apply cuts batches with."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def estimate(self, change: DestinationChange) -> tuple[int, str]:
        return self.estimate_rows(change, None)

    def estimate_rows(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]] | None
    ) -> tuple[int, str]:
        from segops.destinations.mediarithmics.batches import BatchLimits, count_batches

        option = self.connection.option
        limits = BatchLimits(
            int(option("batch_lines") or DEFAULT_BATCH_LINES),
            int(option("batch_bytes") or DEFAULT_BATCH_BYTES),
        )
        mime = str(option("mime_type") or "APPLICATION_X_NDJSON")
        return count_batches(change, mime, limits, rows), ""


PLATFORM = MediarithmicsPlatform()
