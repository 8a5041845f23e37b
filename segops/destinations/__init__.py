"""Destinations: send one planned member change to a platform (or write what would be sent)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from segops.model import DestinationChange, MemberRow

ADD: Final = "add"
REMOVE: Final = "remove"
UPDATE: Final = "update"
# Delta rows arrive in this order: removes (sent with settings_before), then adds and updates
# (sent with settings_after).
OPS: Final = (REMOVE, ADD, UPDATE)


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
    # Delta rows the platform confirmed, as [start, end) ranges of MemberRow.index; None means
    # every row. Only confirmed rows enter the applied state: the next plan sends the rest.
    confirmed: tuple[tuple[int, int], ...] | None = None
    pending: int = 0  # operations left for a later apply (MoEngage quota)
    eta: str = ""  # when the pending operations can be sent, for people
    # The platform accepted what was sent, and nothing confirmed it landed (MoEngage without
    # a callback): the state records the members as accepted, unconfirmed.
    unconfirmed: bool = False


class Journal(Protocol):
    """Durable record of operations: intent -> sent -> accepted -> confirmed (or failed).

    `record` returns only once the entry is stored, so after a kill the next apply knows
    what was sent and what the platform accepted (and polls it instead of resending).
    """

    def get(self, op_id: str) -> Mapping[str, Any] | None:
        """Return the latest entry of an operation, or None if it was never recorded."""
        ...

    def record(self, op_id: str, address: str, status: str, **details: Any) -> None:
        """Append an entry; `details` are JSON values (never secrets, never member ids)."""
        ...


class Resources(Protocol):
    """Platform objects segops created and reuses (document imports, segment ids), by key."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...


class Records(Protocol):
    """Bytes kept beside the state by name, with compare-and-swap (quota ledgers).

    The state store provides them (segops.state.Records): files in `.segops/`, or objects
    under the S3 state's prefix, so a platform's records follow the state to any machine.
    """

    def location(self, name: str) -> str:
        """Return where record `name` is kept, for messages."""
        ...

    def get(self, name: str) -> tuple[bytes, str] | None:
        """Return the record's bytes and its tag (version), or None when there is none."""
        ...

    def put(self, name: str, data: bytes, tag: str | None) -> str:
        """Replace the record if its tag is still `tag` (None: it must not exist); new tag."""
        ...


class DeltaRows:
    """The member delta of one change: call it for its rows, or ask for Arrow batches.

    Apply hands destinations this object as `rows`. Calling it yields one `MemberRow` per
    member, which every destination understands; `batches()` yields the same rows as
    pyarrow record batches (columns op, key, data_bag, expiration_ts, index), for writers
    that format whole columns at once (the `files` form of mediarithmics). Both may be
    called more than once, each time from the start.
    """

    __slots__ = ("_batches", "_rows")

    def __init__(
        self, rows: Callable[[], Iterable[MemberRow]], batches: Callable[[], Iterable[Any]]
    ) -> None:
        self._rows = rows
        self._batches = batches

    def __call__(self) -> Iterable[MemberRow]:
        return self._rows()

    def batches(self) -> Iterable[Any]:
        """Return the rows as pyarrow record batches, in file order."""
        return self._batches()


class Destination(Protocol):
    def apply(
        self, change: DestinationChange, rows: Callable[[], Iterable[MemberRow]]
    ) -> ApplyResult:
        """Send `change`; `rows()` yields its member delta and may be called more than once."""
        ...


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What an API destination needs besides its change: durable records, time, the run."""

    journal: Journal
    resources: Resources
    run: str  # names this apply (published files, import names); stable within one apply
    sleep: Callable[[float], None] = time.sleep  # injected so tests need not wait
    clock: Callable[[], float] = time.time
    root: Path = Path(".")  # the workspace folder
    # The platform's own records (quota ledgers), kept beside the state; None in tests of
    # destinations that keep none.
    records: Records | None = None
    # Return this connection's `what`, made by `make` on first use and closed (when it has
    # a `close`) as the apply ends: HTTP clients, publishers, listeners, quota ledgers.
    shared: Callable[[str, Callable[[], Any]], Any] = lambda _what, make: make()
    # True once Ctrl-C asked apply to stop: send no new operation and stop waiting for
    # results; the operation in flight finishes and is journaled. `sleep` then returns early.
    stop: Callable[[], bool] = lambda: False


__all__ = [
    "ADD",
    "OPS",
    "REMOVE",
    "UPDATE",
    "ApplyContext",
    "ApplyResult",
    "DeltaRows",
    "Destination",
    "Journal",
    "MemberRow",
    "Records",
    "Resources",
    "Sent",
]
