"""Ctrl-C: the first finishes what is in flight, the second stops at once, never a traceback.

While apply sends (`Interrupts.sending`), the first SIGINT only sets `stop`: destinations
send no new operation, stop waiting for results, the one in flight finishes and is
journaled, apply records the state of what the platforms confirmed and releases the lock,
and segops exits 130 saying so. A second SIGINT raises KeyboardInterrupt: the run unwinds
at once (its journal makes the next apply exact), releases the lock and exits 130; a
third ends the process outright. Outside of sending, the first SIGINT raises
KeyboardInterrupt: nothing was changed yet.

SIGTERM (CI cancelling a job) and SIGHUP unwind like a Ctrl-C outside of sending, exiting
128 + the signal's number: scratch folders and partial plan files are removed and apply
releases its lock. Cleanup itself (`held`) is never cut: a signal that comes while a
scratch folder is being removed or a lock released takes effect when that ends.

A long DuckDB query does not return to Python until it ends, so Python's handler would run
only then: a watcher thread, woken through `signal.set_wakeup_fd`, interrupts the member
engine's query at once (`watch`), unless apply is sending (the engine then only merges the
snapshot of what was confirmed, which must finish).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it
NOTICE: Final = (
    "\nInterrupt received: finishing the operation in flight, then recording what the "
    "platforms confirmed. Press Ctrl-C again to stop at once."
)


class Interrupts:
    """SIGINT handling of one segops process (installed by `segops.cli.main`)."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.count = 0  # SIGINTs Python's handler has seen
        self.stop = threading.Event()  # the first one while sending: stop after in-flight work
        self.hard = False  # the run was stopped at once (second SIGINT while sending)
        self._sending = False
        self._write = write or _stderr
        self._targets: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._seen = 0  # SIGINTs the watcher thread has seen
        self._held = 0  # depth of `held()` blocks: a first Ctrl-C waits for their end
        self._pending = False
        self._exit: int | None = None  # the exit code of a SIGTERM or SIGHUP held back
        self.terminated: int | None = None  # 128 + the first SIGTERM or SIGHUP, once one came

    def install(self) -> None:
        """Take over SIGINT, SIGTERM and SIGHUP for this process."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._terminate)
        signal.signal(signal.SIGHUP, self._terminate)
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read,), daemon=True).start()

    def hard_requested(self) -> bool:
        """Return whether a second Ctrl-C asked to stop at once (seen by either handler)."""
        return self.hard or self.count >= 2 or self._seen >= 2

    def requested(self) -> bool:
        """Return whether a Ctrl-C asked apply to stop after what is in flight."""
        return self.stop.is_set()

    @contextmanager
    def sending(self) -> Iterator[Interrupts]:
        """Within the block, the first Ctrl-C stops apply gracefully (see the module doc)."""
        self._sending = True
        try:
            yield self
        finally:
            self._sending = False

    @contextmanager
    def stopping(self, target: Callable[[], None]) -> Iterator[None]:
        """Within the block, Ctrl-C also calls `target` (interrupts a DuckDB query)."""
        with self._lock:
            self._targets.append(target)
        try:
            yield
        finally:
            with self._lock:
                self._targets.remove(target)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Within the block, the first Ctrl-C, a SIGTERM or a SIGHUP waits for its end.

        For work that must not be cut in the middle: DuckDB's extension module loading and
        its first connection (a KeyboardInterrupt raised inside them made DuckDB 2.0's
        bindings print a "Critical nanobind error" and a traceback; found by
        tests/crash/test_interrupt.py under load), and cleanup in a `finally` (a SIGTERM
        that came while a run removed its scratch folder left the folder behind; found by
        tests/cli/test_scratch.py under load). A second Ctrl-C still stops at once.
        Blocks nest: what was held back is raised when the outermost one ends.
        """
        self._held += 1
        pending = False
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                pending, self._pending = self._pending, False
                code, self._exit = self._exit, None
                if code is not None:  # the process was told to end: even over an error
                    raise SystemExit(code)
        if pending:
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds`, or less when a Ctrl-C asks apply to stop."""
        self.stop.wait(max(0.0, seconds))

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self._sending and self.count == 1:
            self.stop.set()
            self._write(NOTICE)
            return
        if self.count >= 3 or (self.count == 2 and not self._sending and not self.stop.is_set()):
            self._write("\nStopped at once.")
            _flush()
            os._exit(EXIT_INTERRUPTED)
        if self.stop.is_set():
            self.hard = True
        if self._held:
            self._pending = True
            return
        raise KeyboardInterrupt

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        if self.terminated is None:
            self.terminated = 128 + signum  # the first one decides the exit code
        if self._held:
            self._exit = self.terminated
            return
        raise SystemExit(self.terminated)

    def _watch(self, read: int) -> None:
        while True:
            try:
                data = os.read(read, 64)
            except OSError:
                return
            if not data:
                return
            for number in data:
                if number != signal.SIGINT:
                    continue
                self._seen += 1
                if not self._sending or self._seen >= 2:
                    with self._lock:
                        targets = list(self._targets)
                    for target in targets:
                        try:
                            target()
                        except Exception:  # nothing left to interrupt
                            pass


_current: list[Interrupts] = []


def current() -> Interrupts | None:
    """Return the process's Interrupts once `segops.cli.main` installed them."""
    return _current[-1] if _current else None


def install() -> Interrupts:
    """Install SIGINT handling for this process and return it."""
    interrupts = Interrupts()
    interrupts.install()
    _current.append(interrupts)
    return interrupts


def interrupted() -> bool:
    """Return whether a Ctrl-C came (a library may have turned it into its own error)."""
    interrupts = current()
    return interrupts is not None and interrupts.count > 0


def termination() -> int | None:
    """Return the exit code a SIGTERM or SIGHUP asked for (128 + its number), if one came.

    A library that saw the signal while it ran (DuckDB checks Python's signals inside a
    query, and ends it with "RuntimeError: Query interrupted") raises its own error: the
    CLI then ends the run with this code, not as a crash.
    """
    interrupts = current()
    return interrupts.terminated if interrupts is not None else None


@contextmanager
def engine_stopped_by_ctrl_c(interrupt: Callable[[], None]) -> Iterator[None]:
    """Within the block, Ctrl-C interrupts the member engine's query (see the module doc)."""
    interrupts = current()
    if interrupts is None:
        yield
        return
    with interrupts.stopping(interrupt):
        yield


@contextmanager
def signals_held() -> Iterator[None]:
    """Within the block, a first Ctrl-C, a SIGTERM or a SIGHUP waits for its end.

    See `Interrupts.held`; without installed Interrupts (segops used as a library), the
    block runs as it is.
    """
    interrupts = current()
    if interrupts is None:
        yield
        return
    with interrupts.held():
        yield


def cleanup(finish: Callable[[], None]) -> None:
    """Run `finish` (cleanup in a `finally`) to its end, whatever SIGTERM or SIGHUP comes.

    One that comes while it runs ends the process once it is done (`signals_held`). One
    handled in the few steps before the hold begins, when `finish` has not started, is
    kept: `finish` then runs held, and the run ends after it.
    """
    ended: SystemExit | None = None
    started = False
    while not started:
        try:
            with signals_held():
                started = True
                finish()
        except SystemExit as exc:
            if started:  # held back during `finish`, or raised by it: it ran
                raise
            ended = exc  # handled before the hold: `finish` has not started
    if ended is not None:
        raise ended


def _stderr(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
