"""echo: a platform that "sends" by appending each member operation to a JSON-lines file.

It is the smallest complete segops platform: connection and destination keys with their
JSON Schema, settings and identity, and a destination that reports what landed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from segops.destinations import ApplyContext, ApplyResult, Sent
from segops.destinations.platform import DestinationParts, PlatformSpec, settings_of
from segops.model import Connection, DestinationChange, Identifier, IdentifierKind, MemberRow


class EchoPlatform(PlatformSpec):
    name = "echo"
    title = "Echo"
    connection_schema = {
        "folder": {
            "description": "echo: folder the lists are written to, relative to segops.yaml.",
            "type": "string",
            "minLength": 1,
        }
    }
    connection_required = ("folder",)
    destination_schema = {
        "list": {
            "description": "echo: the list that receives the members.",
            "type": "string",
            "pattern": "^[a-z]+$",
        },
        "column": {"description": "echo: source column of the member id.", "type": "string"},
    }
    destination_required = ("list",)
    identity_settings = frozenset({"connection", "list"})

    def destination(self, raw: Mapping[str, Any]) -> DestinationParts:
        identifier = Identifier(IdentifierKind.ATTRIBUTE, raw.get("column", "id"))
        return DestinationParts(
            identifier, settings_of({"connection": raw["connection"], "list": raw["list"]})
        )

    def open(
        self, connection: Connection, secrets: Mapping[str, str], context: ApplyContext
    ) -> EchoDestination:
        return EchoDestination(context.root / str(connection.option("folder")))


class EchoDestination:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def apply(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]]
    ) -> ApplyResult:
        self.folder.mkdir(parents=True, exist_ok=True)
        counts = {"add": 0, "remove": 0, "update": 0}
        settings = dict(change.settings_after or change.settings_before or ())
        with (self.folder / f"{settings['list']}.jsonl").open("a") as out:
            for row in rows():
                counts[row.op] += 1
                out.write(json.dumps({"op": row.op, "key": row.key}) + "\n")
        return ApplyResult(change.address, True, Sent(**counts))


PLATFORM = EchoPlatform()
