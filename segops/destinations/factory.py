"""Opens the destination of each planned change; owns what lives for a whole apply.

Each connection's platform opens its destinations (`PlatformSpec.open`); what a platform
shares between changes (HTTP clients, publishers, quota ledgers, callback listeners) is
made once per connection, on first use, and closed when the apply ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from segops.destinations import ApplyContext, Destination, Journal, Records, Resources
from segops.destinations.registry import platform_spec
from segops.errors import DestinationError
from segops.model import Connection, DestinationChange, Workspace


class DestinationFactory:
    def __init__(
        self,
        root: Path,
        records: Records,
        workspace: Workspace,
        secrets: Mapping[str, Mapping[str, str]],
        resources: Resources,
        run: str,
        stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._root = root
        self._records = records
        self._workspace = workspace
        self._secrets = secrets
        self._resources = resources
        self._run = run
        self._stop, self._sleep = stop, sleep
        self._stack = ExitStack()
        self._shared: dict[tuple[str, str], Any] = {}

    def destination_for(self, change: DestinationChange, journal: Journal) -> Destination:
        """Return the destination that sends `change`, its journal scoped to the change."""
        connection = self._workspace.connection(change.connection)
        if connection is None:
            raise DestinationError(f"connection '{change.connection}' is not in segops.yaml")
        spec = platform_spec(connection.platform)
        if spec is None:
            raise DestinationError(
                f"connection '{connection.name}' uses platform '{connection.platform}', "
                "which is not installed"
            )
        context = ApplyContext(
            journal,
            self._resources,
            self._run,
            sleep=self._sleep,
            root=self._root,
            records=self._records,
            shared=lambda what, make: self.shared(connection, what, make),
            stop=self._stop,
        )
        return spec.open(connection, self._secrets.get(connection.name, {}), context)

    def shared(self, connection: Connection, what: str, make: Callable[[], Any]) -> Any:
        """Return the connection's `what`, made on first use and closed with the factory."""
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
