"""Secrets for API connections, read from the environment variables a connection names.

segops.yaml holds variable names, never secrets. Every variable an apply needs is checked
before anything is sent; a missing one is an error naming the connection and the variable.
Secret values are only ever handed to the platform's client. Which options name a secret
is each platform's to say (`PlatformSpec.secrets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from segops.destinations.registry import platform_spec
from segops.errors import ManifestError, Problem
from segops.model import Connection


class Credentials(Mapping[str, str]):
    """The secrets of one connection, by option name. `repr` never shows them."""

    def __init__(self, connection: str, values: Mapping[str, str]) -> None:
        self.connection = connection
        self._values = dict(values)

    def __getitem__(self, option: str) -> str:
        return self._values[option]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Credentials({self.connection!r}, <{len(self._values)} hidden>)"

    __str__ = __repr__


def resolve(connections: Iterable[Connection], env: Mapping[str, str]) -> dict[str, Credentials]:
    """Return the credentials of every API connection, or raise naming every missing one."""
    found: dict[str, Credentials] = {}
    problems = []
    for connection in connections:
        spec = platform_spec(connection.platform)
        values = {}
        for option, what in spec.secrets if spec else ():
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
