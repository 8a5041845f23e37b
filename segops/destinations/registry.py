"""Builds the destination of each planned change; owns what lives for a whole apply.

HTTP clients, publishers, quota ledgers and callback receivers are made once per
connection, on first use, and closed when the apply ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from segops.apply.journal import FileJournal, JournalResources
from segops.config.credentials import Credentials
from segops.destinations import ApplyContext, Destination, Journal
from segops.destinations.files import FilesDestination
from segops.destinations.http import RetryPolicy
from segops.destinations.mediarithmics.destination import (
    MediarithmicsDestination,
    make_mediarithmics_client,
)
from segops.destinations.moengage.callbacks import callback_receiver_for
from segops.destinations.moengage.destination import MoEngageDestination, make_moengage_client
from segops.destinations.moengage.publish import publisher_for
from segops.destinations.moengage.quota import LedgerEntry, QuotaLedger, QuotaLimits
from segops.errors import DestinationError
from segops.model import Connection, DestinationChange, Platform, Workspace


class DestinationRegistry:
    def __init__(
        self,
        root: Path,
        state_dir: Path,
        workspace: Workspace,
        credentials: Mapping[str, Credentials],
        journal: FileJournal,
        run: str,
    ) -> None:
        self._root = root
        self._state_dir = state_dir
        self._workspace = workspace
        self._credentials = credentials
        self._resources = JournalResources(journal)
        self._run = run
        self._stack = ExitStack()
        self._shared: dict[tuple[str, str], Any] = {}

    def destination_for(self, change: DestinationChange, journal: Journal) -> Destination:
        connection = self._workspace.connection(change.connection)
        if connection is None:
            raise DestinationError(f"connection '{change.connection}' is not in segops.yaml")
        if connection.platform is Platform.FILES:
            return FilesDestination(self._root, connection, self._run)
        context = ApplyContext(journal, self._resources, self._run)
        if connection.platform is Platform.MEDIARITHMICS:
            return self._mediarithmics(connection, context)
        return self._moengage(connection, context)

    def shared(self, connection: Connection, what: str, make: Callable[[], Any]) -> Any:
        """Return the connection's `what`, made on first use and closed with the registry."""
        key = (connection.name, what)
        if key not in self._shared:
            made = make()
            close = getattr(made, "close", None)
            if callable(close):
                self._stack.callback(close)
            self._shared[key] = made
        return self._shared[key]

    def close(self) -> None:
        self._stack.close()

    def _mediarithmics(self, connection: Connection, context: ApplyContext) -> Destination:
        policy = RetryPolicy.from_connection(connection)
        token = self._credentials[connection.name]["token_env"]
        client = self.shared(
            connection, "client", lambda: make_mediarithmics_client(connection, token, policy)
        )
        return MediarithmicsDestination(connection, client, context, policy)

    def _moengage(self, connection: Connection, context: ApplyContext) -> Destination:
        policy = RetryPolicy.from_connection(connection)
        secrets = self._credentials[connection.name]
        client = self.shared(
            connection,
            "client",
            lambda: make_moengage_client(
                connection, secrets["workspace_id_env"], secrets["api_key_env"], policy
            ),
        )
        publisher = self.shared(connection, "publisher", lambda: publisher_for(connection))
        receiver = self.shared(connection, "callbacks", lambda: callback_receiver_for(connection))
        ledger = self.shared(
            connection,
            "ledger",
            lambda: QuotaLedger(
                ledger_path(self._state_dir, connection), QuotaLimits.from_connection(connection)
            ),
        )
        return MoEngageDestination(connection, client, context, policy, publisher, ledger, receiver)


def ledger_path(state_dir: Path, connection: Connection) -> Path:
    """Return where the MoEngage quota ledger of `connection` is kept."""
    return state_dir / f"moengage-ledger-{connection.name}.json"


def ledger_entries(state_dir: Path, connection: Connection) -> tuple[LedgerEntry, ...]:
    """Return the operations recorded against the quota of a MoEngage connection."""
    path = ledger_path(state_dir, connection)
    return QuotaLedger(path, QuotaLimits.from_connection(connection)).entries
