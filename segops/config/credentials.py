"""Secrets for API connections, read from the environment variables a connection names.

segops.yaml holds variable names, never secrets. Every variable an apply needs is checked
before anything is sent; a missing one is an error naming the connection and the variable.
Secret values are only ever handed to the HTTP client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from segops.errors import ManifestError, Problem
from segops.model import Connection, Platform

# The option of each platform that names an environment variable, and what it holds.
SECRET_OPTIONS: Mapping[Platform, tuple[tuple[str, str], ...]] = {
    Platform.MEDIARITHMICS: (("token_env", "API token"),),
    Platform.MOENGAGE: (("workspace_id_env", "workspace id"), ("api_key_env", "Data API key")),
    Platform.FILES: (),
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """The secrets of one connection, by option name. `repr` never shows them."""

    connection: str
    values: Mapping[str, str]

    def __getitem__(self, option: str) -> str:
        return self.values[option]

    def __repr__(self) -> str:
        return f"Credentials({self.connection!r}, <{len(self.values)} hidden>)"


def resolve(connections: Iterable[Connection], env: Mapping[str, str]) -> dict[str, Credentials]:
    """Return the credentials of every API connection, or raise naming every missing one."""
    found: dict[str, Credentials] = {}
    problems = []
    for connection in connections:
        values = {}
        for option, what in SECRET_OPTIONS.get(connection.platform, ()):
            name = str(connection.option(option) or "")
            value = env.get(name, "") if name else ""
            if not value:
                problems.append(
                    Problem(
                        "segops.yaml",
                        f"environment variable {name or '(none named)'} ({what}) is not set",
                        None,
                        f"connections.{connection.name}.{option}",
                    )
                )
            else:
                values[option] = value
        found[connection.name] = Credentials(connection.name, values)
    if problems:
        raise ManifestError(problems)
    return found
