"""Progress of long steps, reported by any stage without knowing who shows it.

A stage opens a step (reading a source, a diff, sending executions, waiting for a quota)
and advances it; the shell decides what that becomes: bars with counts, bytes and ETA on
a terminal, one-line milestones in a CI log, or nothing (`--no-progress`, library use).

    with observe.step("Sending cart.mics", total=20, unit="executions") as step:
        for batch in batches:
            ...
            step.advance(1, size=len(batch.body))
        step.note("waiting for 3 executions to finish")

Labels, notes and counts are shown to people and written to CI logs: they name segments,
addresses, files and counts, never a member identifier and never a secret. Steps may be
advanced from worker threads: reporters are thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Step(Protocol):
    """One long step under way."""

    def advance(self, amount: int = 1, *, size: int = 0) -> None:
        """Count `amount` more units done, and `size` more bytes."""
        ...

    def note(self, text: str) -> None:
        """Say what the step is doing now (waiting for a quota, polling)."""
        ...

    def close(self) -> None:
        """End the step."""
        ...


class Reporter(Protocol):
    """Shows steps: the shell installs one with `reporting`."""

    def step(self, label: str, total: int | None, unit: str, total_size: int | None) -> Step:
        """Start a step of `total` `unit`s (None: unknown) and `total_size` bytes."""
        ...


class _Silent:
    def step(self, label: str, total: int | None, unit: str, total_size: int | None) -> Step:
        return _SilentStep()


class _SilentStep:
    def advance(self, amount: int = 1, *, size: int = 0) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


_lock = threading.Lock()
_current: list[Reporter] = [_Silent()]


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Show the steps started inside the block with `reporter`."""
    with _lock:
        _current.append(reporter)
    try:
        yield reporter
    finally:
        with _lock:
            _current.remove(reporter)


@contextmanager
def step(
    label: str, total: int | None = None, unit: str = "", total_size: int | None = None
) -> Iterator[Step]:
    """Start a step (see the module docstring); it ends with the block."""
    with _lock:
        reporter = _current[-1]
    started = reporter.step(label, total, unit, total_size)
    try:
        yield started
    finally:
        started.close()
