"""Destinations: send one planned member change to a platform (or write what would be sent)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from segops.model import DestinationChange

ADD: Final = "add"
REMOVE: Final = "remove"
UPDATE: Final = "update"
# Delta rows arrive in this order: removes (sent with settings_before), then adds and updates
# (sent with settings_after).
OPS: Final = (REMOVE, ADD, UPDATE)


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One row of a destination's member delta."""

    op: str  # "add" | "remove" | "update"
    key: str  # the identifier value exactly as sent
    data_bag: str | None = None  # compact JSON object text
    expiration_ts: int | None = None  # epoch milliseconds


@dataclass(frozen=True, slots=True)
class Sent:
    """How many members one apply actually sent (or wrote), per operation."""

    add: int = 0
    remove: int = 0
    update: int = 0

    @property
    def total(self) -> int:
        return self.add + self.remove + self.update


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one destination did with its change."""

    address: str
    ok: bool
    sent: Sent
    files: tuple[str, ...] = ()  # workspace-relative posix paths written, in write order
    message: str = ""


class Destination(Protocol):
    def apply(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]]
    ) -> ApplyResult:
        """Send `change`; `rows()` yields its member delta and may be called more than once."""
        ...


__all__ = [
    "ADD",
    "OPS",
    "REMOVE",
    "UPDATE",
    "ApplyResult",
    "Destination",
    "MemberRow",
    "Sent",
]
