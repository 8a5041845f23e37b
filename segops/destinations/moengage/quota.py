"""MoEngage File Segment API quotas: a persisted ledger of operations and a pure scheduler.

The limits (reference §8) hold over rolling windows, "the last hour" and "the last 24 hours":
10 operations an hour, 100 a day, 2,000,000 users a day. An operation of `u` users fits at
time `t` when, counting it, at most `ops_per_hour` operations fall in (t - 1 h, t], at most
`ops_per_day` in (t - 24 h, t], and their users sum to at most `users_per_day`.

What counts, read conservatively where the reference is silent:
- operations: create, add-users, remove-users, and replace too (the reference names only
  create/add/remove and says replace is "not confirmed either way");
- users: every line of every file sent, removes and replaces included (the reference speaks
  of users "uploaded"; for replace only newly added users count, which segops cannot know).

The ledger records what segops sent from this workspace, and MoEngage's refusals: its
answer (429) is the authority. A refusal blocks every operation until the wait its
`Retry-After` asks for, or, without one, for the documented window of the hourly limit
(one hour: every operation MoEngage counted has left that window by then). After a refusal
without Retry-After, and for a day, the hourly limit is taken to be no more than the
operations the ledger held in the hour before it (when it held some): MoEngage's real quota
is lower than configured, or shared with others. So the next plan's ETA comes from
MoEngage's answer, not from the configured numbers. `schedule` is pure, so the planner can
say how many operations a change takes and when the last can be sent, from the same numbers
apply uses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from segops.destinations.moengage.requests import MAX_FILE_BYTES
from segops.errors import DestinationError
from segops.model import Connection

if TYPE_CHECKING:
    from segops.destinations import Records

HOUR = 3600.0
DAY = 86400.0
LEDGER_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    ops_per_hour: int = 10
    ops_per_day: int = 100
    users_per_day: int = 2_000_000

    @classmethod
    def from_connection(cls, connection: Connection) -> QuotaLimits:
        """Return the limits of `connection` (options quota.*), defaulting to MoEngage's."""
        default = cls()
        return cls(
            *(
                int(connection.option(f"quota.{name}", getattr(default, name)) or 1)
                for name in ("ops_per_hour", "ops_per_day", "users_per_day")
            )
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    at: float  # epoch seconds the operation was accepted
    kind: str  # create | add-users | remove-users | replace
    users: int  # lines in its file


@dataclass(frozen=True, slots=True)
class Refusal:
    at: float  # epoch seconds MoEngage answered 429
    until: float  # the earliest epoch it may accept again
    hour_ops: int  # operations the ledger held in the hour before (0: none, or a Retry-After)

    @property
    def note(self) -> str:
        """Return what the refusal means, for people."""
        when = eta_text([self.until], self.at)
        return f"MoEngage answered 429 Too Many Requests: not before {when}"


def learned(
    limits: QuotaLimits, refusals: Iterable[Refusal], now: float
) -> tuple[QuotaLimits, float]:
    """Return the limits MoEngage's refusals of the last day show, and when sending may resume."""
    recent = [r for r in refusals if r.at > now - DAY]
    shown = [r.hour_ops for r in recent if r.hour_ops > 0]
    if shown:
        limits = replace(limits, ops_per_hour=min(limits.ops_per_hour, *shown))
    return limits, max((r.until for r in refusals), default=0.0)


def schedule(
    ops: Sequence[int],
    entries: Iterable[LedgerEntry],
    limits: QuotaLimits,
    now: float,
    not_before: float = 0.0,
) -> list[float]:
    """Return the earliest epoch at which each operation (its user count, in sending order) fits.

    Operations are sent in order, so each starts no earlier than the one before, and none
    before `not_before`. An operation larger than `users_per_day` never fits: it and every
    later one get `math.inf`.
    """
    history = sorted((e.at, e.users) for e in entries if e.at > now - DAY)
    times: list[float] = []
    t = max(now, not_before)
    for users in ops:
        if users > limits.users_per_day or math.isinf(t):
            t = math.inf
        else:
            t = _earliest(history, users, limits, t)
            history = [h for h in history if h[0] > t - DAY] + [(t, users)]
        times.append(t)
    return times


def _earliest(history: list[tuple[float, int]], users: int, limits: QuotaLimits, t: float) -> float:
    """Return the first time from `t` on when an operation of `users` fits next to `history`.

    Only `t` and the moments an entry leaves a window can be the answer; the last of those (the
    newest entry leaving the day) always fits, since `users` alone is within the daily limit.
    """
    leaving = sorted({at + span for at, _ in history for span in (HOUR, DAY) if at + span > t})
    for candidate in (t, *leaving):
        hour = sum(1 for at, _ in history if at > candidate - HOUR)
        day = [n for at, n in history if at > candidate - DAY]
        if (
            hour < limits.ops_per_hour
            and len(day) < limits.ops_per_day
            and sum(day) + users <= limits.users_per_day
        ):
            return candidate
    raise AssertionError("unreachable: the newest entry leaving the day window always fits")


def operation_sizes(removes: int, adds: int, limits: QuotaLimits, key_bytes: int = 65) -> list[int]:
    """Return the user count of each operation a change of `removes` and `adds` takes.

    Files hold at most `users_per_day` lines and stay under MAX_FILE_BYTES; `key_bytes` (a
    line's length, 65 for a sha256 hex) estimates the second limit when keys vary in length.
    """
    most = max(1, min(limits.users_per_day, MAX_FILE_BYTES // max(1, key_bytes)))
    sizes: list[int] = []
    for rows in (removes, adds):
        full, rest = divmod(rows, most)
        sizes += [most] * full + ([rest] if rest else [])
    return sizes


def eta_text(times: Sequence[float], now: float) -> str:
    """Return when scheduled operations go out, for people: "now", or UTC times."""
    if not times:
        return ""
    if math.isinf(times[-1]):
        return "never: an operation is larger than the daily user quota"
    first, last = (_when(t, now) for t in (times[0], times[-1]))
    if len(times) == 1 or first == last:
        return first
    return f"{first}; the last of {len(times)} by {last}"


def _when(t: float, now: float) -> str:
    if t <= now:
        return "now"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


class QuotaLedger:
    """The operations segops sent to one MoEngage workspace in the last 24 hours, and
    MoEngage's refusals (429).

    Kept as a record beside the state (`records`, by `name`), rewritten whole on every
    operation with the record's compare-and-swap, so it follows the state to any runner.
    """

    def __init__(self, records: Records, name: str, limits: QuotaLimits | None = None) -> None:
        self.records, self.name = records, name
        self.where = records.location(name)
        self.limits = limits or QuotaLimits()
        self._tag: str | None = None
        self._entries, self._refusals = self._load()

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """The operations recorded in the 24 hours before the last write."""
        return tuple(self._entries)

    @property
    def refusals(self) -> tuple[Refusal, ...]:
        """MoEngage's refusals (429) in the 24 hours before the last write."""
        return tuple(self._refusals)

    def effective(self, now: float) -> tuple[QuotaLimits, float]:
        """Return the limits to schedule with at `now`, and when sending may resume."""
        return learned(self.limits, self._refusals, now)

    def times(self, ops: Sequence[int], now: float) -> list[float]:
        """Return when each operation (its users, in sending order) can go out."""
        limits, not_before = self.effective(now)
        return schedule(ops, self._entries, limits, now, not_before)

    def allows(self, users: int, now: float) -> bool:
        """Return whether an operation of `users` fits the quotas at `now`."""
        return self.next_slot(users, now) <= now

    def next_slot(self, users: int, now: float) -> float:
        """Return the earliest epoch at which an operation of `users` fits."""
        return self.times([users], now)[0]

    def record(self, kind: str, users: int, now: float) -> None:
        """Add an operation sent at `now`; return once the ledger is durably on disk."""
        self._write([*self._entries, LedgerEntry(now, kind, users)], self._refusals, now)

    def refuse(self, now: float, retry_after: float | None) -> Refusal:
        """Record that MoEngage answered 429 at `now`; return the refusal (on disk)."""
        wait = HOUR if retry_after is None else max(0.0, retry_after)
        # A Retry-After says when: nothing to guess. Without one, the hour's count is a limit.
        hour_ops = (
            0 if retry_after is not None else sum(1 for e in self._entries if e.at > now - HOUR)
        )
        refusal = Refusal(now, now + wait, hour_ops)
        self._write(self._entries, [*self._refusals, refusal], now)
        return refusal

    def _write(self, entries: list[LedgerEntry], refusals: list[Refusal], now: float) -> None:
        entries = [e for e in entries if e.at > now - DAY]
        refusals = [r for r in refusals if r.at > now - DAY or r.until > now]
        document = {
            "format_version": LEDGER_FORMAT_VERSION,
            "entries": [asdict(e) for e in entries],
            "refusals": [asdict(r) for r in refusals],
        }
        data = (json.dumps(document, indent=1) + "\n").encode()
        self._tag = self.records.put(self.name, data, self._tag)
        self._entries, self._refusals = entries, refusals

    def _load(self) -> tuple[list[LedgerEntry], list[Refusal]]:
        got = self.records.get(self.name)
        if got is None:
            return [], []
        try:
            document = json.loads(got[0])
        except ValueError as exc:
            raise DestinationError(f"{self.where}: cannot read the quota ledger: {exc}") from None
        self._tag = got[1]
        try:
            if document["format_version"] != LEDGER_FORMAT_VERSION:
                raise ValueError(f"unknown format_version {document['format_version']!r}")
            entries = [
                LedgerEntry(float(e["at"]), str(e["kind"]), int(e["users"]))
                for e in document["entries"]
            ]
            refusals = [  # a ledger written before refusals were kept has none
                Refusal(float(r["at"]), float(r["until"]), int(r["hour_ops"]))
                for r in document.get("refusals", [])
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise DestinationError(f"{self.where}: not a segops quota ledger: {exc}") from None
        return entries, refusals


__all__ = [
    "DAY",
    "HOUR",
    "LedgerEntry",
    "QuotaLedger",
    "QuotaLimits",
    "Refusal",
    "eta_text",
    "learned",
    "operation_sizes",
    "schedule",
]
