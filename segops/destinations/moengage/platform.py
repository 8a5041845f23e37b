"""MoEngage as segops sees it: keys, settings, identity, quota-aware operation counts, opening.

Light on purpose (it is read whenever a workspace is loaded): the HTTP client, publishers
and callback listener are imported only by `open`, the files form only by `write_files`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from segops.destinations.moengage.quota import (
    LedgerEntry,
    QuotaLedger,
    QuotaLimits,
    eta_text,
    operation_sizes,
    schedule,
)
from segops.destinations.platform import (
    DestinationParts,
    FilesOut,
    KeyPath,
    PlatformSpec,
    settings_of,
)
from segops.errors import DestinationError
from segops.model import (
    Connection,
    DestinationChange,
    DiffMode,
    Identifier,
    IdentifierKind,
    KeyEncoding,
    MemberRow,
    Platform,
    Scalar,
    Settings,
)

if TYPE_CHECKING:
    from segops.destinations import ApplyContext, Destination, Records, Sent

DEFAULT_EXPIRY_DAYS = 365


class MoEngagePlatform(PlatformSpec):
    name = "moengage"
    title = "MoEngage"
    connection_defaults = {"data_center": "01"}
    secrets = (("workspace_id_env", "workspace id"), ("api_key_env", "Data API key"))
    destination_keys = ("segment", "attribute", "expiry_days", "on_existing")
    destination_required = ("segment", "attribute")
    key_hints = {
        "identifier": "; MoEngage identifies members by a user attribute: use attribute: "
        "{name, type, column}"
    }
    resync_mode = DiffMode.FULL  # one replace call drops every user and loads the file
    identity_settings = frozenset(
        {
            "connection",
            "segment.name",
            "segment.cs_id",
            "attribute.name",
            "attribute.type",
            "identifier.format",
        }
    )

    def connection_problems(self, raw: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
        """A member file needs a URL MoEngage can download: refuse one it could never reach.

        Files served from the applying machine (`publish.http`) reach only a MoEngage on
        the same machine, an emulator: with any other base URL (MoEngage's own by default),
        a delivery would be accepted and then fail where nobody looks.
        """
        publish = raw.get("publish")
        base_url = raw.get("base_url")
        here = isinstance(base_url, str) and is_loopback_url(base_url)
        if publish is None:
            return [
                (
                    (),
                    "missing `publish`: MoEngage downloads member files from a URL; configure "
                    "publish: {s3: {bucket: ...}}"
                    + (" (or publish: {http: {}} for this emulator)" if here else ""),
                )
            ]
        if "http" in publish and not here:
            return [
                (
                    ("publish", "http"),
                    "serves member files from this machine, which MoEngage's servers cannot "
                    "reach: use publish.s3 (publish.http is only for a base_url on this machine,"
                    " an emulator)",
                )
            ]
        return []

    def destination(self, raw: Mapping[str, Any]) -> DestinationParts:
        attribute = raw["attribute"]
        identifier = Identifier(
            kind=IdentifierKind.ATTRIBUTE,
            column=attribute.get("column", attribute["name"]),
            format=attribute.get("format"),
            attribute_name=attribute["name"],
            attribute_type=attribute.get("type", "string"),
            integers=bool(attribute.get("integers", False)),
        )
        settings = settings_of(
            {
                "connection": raw["connection"],
                "segment.name": raw["segment"]["name"],
                "segment.cs_id": raw["segment"].get("cs_id"),
                "attribute.name": identifier.attribute_name,
                "attribute.type": identifier.attribute_type,
                "identifier.format": identifier.format,
                "expiry_days": int(raw.get("expiry_days", DEFAULT_EXPIRY_DAYS)),
                # Only when set: "fail" is the default, and a setting absent from older
                # states would otherwise show as a change.
                "on_existing": "replace" if raw.get("on_existing") == "replace" else None,
            }
        )
        return DestinationParts(identifier, settings)

    def segment_keys(self, settings: Mapping[str, Scalar]) -> list[tuple[str, ...]]:
        keys: list[tuple[str, ...]] = [
            (self.name, f"connection={settings['connection']}", f"name={settings['segment.name']}")
        ]
        if "segment.cs_id" in settings:  # MoEngage ids are unique: the same id, the same segment
            keys.append((self.name, f"cs_id={settings['segment.cs_id']}"))
        return keys

    def known_segment(self, settings: Settings, resources: Mapping[str, str]) -> str:
        values = dict(settings)
        if values.get("segment.cs_id"):
            return f"segment.cs_id {values['segment.cs_id']} is an id MoEngage gave it"
        if segment_resource(str(values.get("connection")), str(values.get("segment.name"))) in (
            resources
        ):
            return "segops created it before: the state keeps its cs_id"
        return ""

    def estimator(self, connection: Connection, records: Records, now: float) -> _QuotaSchedule:
        limits = QuotaLimits.from_connection(connection)
        if connection.platform != Platform.MOENGAGE:  # a files connection: no quota applies
            return _QuotaSchedule(limits, None, now)
        ledger = QuotaLedger(records, ledger_name(connection), limits)
        effective, not_before = ledger.effective(now)  # what MoEngage's refusals showed
        return _QuotaSchedule(effective, list(ledger.entries), now, not_before)

    def open(
        self, connection: Connection, secrets: Mapping[str, str], context: ApplyContext
    ) -> Destination:
        from segops.destinations.http import RetryPolicy
        from segops.destinations.moengage.callbacks import callback_receiver_for
        from segops.destinations.moengage.client import make_moengage_client
        from segops.destinations.moengage.destination import MoEngageDestination
        from segops.destinations.moengage.publish import publisher_for

        policy = RetryPolicy.from_connection(connection)
        workspace_id, api_key = secrets["workspace_id_env"], secrets["api_key_env"]
        client = context.shared(
            "client", lambda: make_moengage_client(connection, workspace_id, api_key, policy)
        )
        publisher = context.shared("publisher", lambda: publisher_for(connection))
        receiver = context.shared("callbacks", lambda: callback_receiver_for(connection))
        limits = QuotaLimits.from_connection(connection)
        records = context.records
        if records is None:
            raise DestinationError(f"connection '{connection.name}': no records to keep its quota")
        name = ledger_name(connection)
        ledger = context.shared("ledger", lambda: QuotaLedger(records, name, limits))
        return MoEngageDestination(connection, client, context, policy, publisher, ledger, receiver)

    def write_files(
        self, change: DestinationChange, rows: Iterable[MemberRow], out: FilesOut
    ) -> Sent | None:
        from segops.destinations.moengage.files import write_requests

        return write_requests(change, rows, out)


class _QuotaSchedule:
    """Operations per change and, with a ledger, when the quota lets the last go out.

    The changes of one plan share the connection's quota: each one is scheduled after the
    operations of the changes before it.
    """

    def __init__(
        self,
        limits: QuotaLimits,
        entries: list[LedgerEntry] | None,
        now: float,
        not_before: float = 0.0,
    ):
        self.limits, self.entries, self.now = limits, entries, now
        self.not_before = not_before

    def estimate(self, change: DestinationChange) -> tuple[int, str]:
        counts = change.members
        key_bytes = 65 if change.encoding is KeyEncoding.HEX else 257  # line length, at most
        sizes = operation_sizes(counts.remove, counts.add, self.limits, key_bytes)
        if self.entries is None:
            return len(sizes), ""
        times = schedule(sizes, self.entries, self.limits, self.now, self.not_before)
        self.entries.extend(
            LedgerEntry(t, "planned", n)
            for t, n in zip(times, sizes, strict=True)
            if t != float("inf")
        )
        return len(sizes), eta_text(times, self.now)


def is_loopback_url(url: str) -> bool:
    """Return whether `url` names this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def segment_resource(connection: str, segment_name: str) -> str:
    """Return the resource key under which the state keeps a MoEngage segment's cs_id."""
    return f"moengage/{connection}/{segment_name}"


def ledger_name(connection: Connection) -> str:
    """Return the name of the record that holds the MoEngage quota ledger of `connection`."""
    return f"moengage-ledger-{connection.name}.json"


PLATFORM = MoEngagePlatform()
