"""What one apply of one MoEngage change did so far, and the ApplyResult it comes to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from segops.destinations import ApplyResult, Sent
from segops.destinations.moengage.operations import Ranges, Step


@dataclass
class Progress:
    confirmed: list[tuple[int, int]] = field(default_factory=list)  # delta row ranges
    # callback key -> (step, publisher key) of the operations accepted and awaiting a result
    awaiting: dict[str, tuple[Step, str]] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)  # users of each step left for the quota
    sent: Sent = field(default_factory=Sent)
    done: int = 0  # steps confirmed
    found: int = 0  # users MoEngage reported found
    failures: list[str] = field(default_factory=list)  # processing errors (callbacks)
    notes: list[str] = field(default_factory=list)
    error: str = ""  # why sending stopped early (a refusal, retries run out)
    # Operations taken as done on MoEngage's 202 alone (no callback configured).
    unconfirmed: bool = False

    def confirm(self, ranges: Ranges) -> None:
        self.confirmed += ranges
        self.done += 1

    def count_sent(self, step: Step) -> None:
        self.sent = Sent(add=self.sent.add + step.adds, remove=self.sent.remove + step.removes)

    def result(
        self, address: str, rows: int, outstanding: int, eta: str, callbacks: bool
    ) -> ApplyResult:
        """Return the change's result; `rows` is the size of its delta.

        Every row confirmed: `confirmed=None`. Operations awaiting a result: `ok=False` and
        `confirmed=()`, so apply neither writes the state nor forgets the journal, and the next
        apply sees the same delta, the same operation ids and their journal entries. Otherwise
        the confirmed ranges, so the next plan sends only the rest. Operations left for the
        quota are not a failure: `ok` stays True, `pending` and `eta` say what is left.
        """
        ranges = merge(self.confirmed)
        done = ranges == [(0, rows)] and not outstanding
        parts = [self.error] if self.error else []
        parts.append(f"{_ops(self.done)} confirmed: +{self.sent.add} -{self.sent.remove} sent")
        if callbacks:
            parts.append(f"MoEngage found {self.found} users")
        if self.failures:
            parts.append(f"{_ops(len(self.failures))} failed: {self.failures[0]}")
        if outstanding:
            parts.append(f"{_ops(outstanding)} awaiting MoEngage's result (the next apply checks)")
        if self.pending:
            parts.append(f"{_ops(len(self.pending))} pending for the quota, next: {eta}")
        return ApplyResult(
            address,
            not self.error and not self.failures and not outstanding,
            self.sent,
            message="; ".join(parts + self.notes),
            confirmed=None if done else (() if outstanding else tuple(ranges)),
            pending=len(self.pending) + outstanding,
            eta=eta if self.pending else "",
            unconfirmed=self.unconfirmed,
        )


def _ops(n: int) -> str:
    return f"{n} operation" if n == 1 else f"{n} operations"


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return `ranges` sorted, without empty ones, overlapping and touching ones joined."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
