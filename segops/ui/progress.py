"""What segops.observe steps become: bars on a terminal, milestone lines elsewhere.

- `RichReporter` (stderr is a terminal, not CI): one bar per step under way, with counts,
  bytes, elapsed time and ETA; bars vanish when their step ends.
- `PlainReporter` (a CI log, a pipe): one line per milestone, at most one per step every
  `interval` seconds (SEGOPS_PROGRESS_INTERVAL, 10 by default; 0 prints every advance), and
  a closing line for a step that printed any. A step that ends within the interval prints
  nothing, so short runs keep their output as it was.

Both write to stderr: stdout carries only the output asked for (a plan, JSON).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

from segops.observe import Step

INTERVAL_ENV: Final = "SEGOPS_PROGRESS_INTERVAL"
DEFAULT_INTERVAL: Final = 10.0


def size_text(size: float) -> str:
    """Return a byte count for people: 950 B, 12.3 kB, 4.1 MB, 2.0 GB."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def duration_text(seconds: float) -> str:
    """Return a duration for people: 4 s, 2 min 5 s, 1 h 10 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class _Count:
    """Done so far, and what a line says about it."""

    def __init__(self, label: str, total: int | None, unit: str, total_size: int | None) -> None:
        self.label, self.total, self.unit, self.total_size = label, total, unit, total_size
        self.done = 0
        self.size = 0

    def text(self, elapsed: float, final: bool = False) -> str:
        parts = []
        if self.total is not None:
            parts.append(f"{self.done:,}/{self.total:,} {self.unit}".rstrip())
        elif self.done or self.unit:
            parts.append(f"{self.done:,} {self.unit}".rstrip())
        if self.total_size:
            parts.append(f"{size_text(self.size)} of {size_text(self.total_size)}")
        elif self.size:
            parts.append(size_text(self.size))
        parts.append(duration_text(elapsed) if final else f"{duration_text(elapsed)} elapsed")
        left = None if final else self.left(elapsed)
        if left is not None and left >= 1:
            parts.append(f"about {duration_text(left)} left")
        return ", ".join(parts)

    def left(self, elapsed: float) -> float | None:
        """Return the seconds left at the rate so far (bytes when known, else counts)."""
        if self.total_size and self.size:
            done, total = self.size, self.total_size
        elif self.total and self.done:
            done, total = self.done, self.total
        else:
            return None
        return None if done >= total else elapsed * (total - done) / done


class PlainReporter:
    """Milestone lines (see the module docstring), thread-safe."""

    def __init__(
        self,
        write: Callable[[str], None],
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write, self.interval, self._clock = write, interval, clock
        self._lock = threading.Lock()

    def step(self, label: str, total: int | None, unit: str, total_size: int | None) -> Step:
        return _PlainStep(self, _Count(label, total, unit, total_size))

    def emit(self, line: str) -> None:
        with self._lock:
            self._write(line)


class _PlainStep:
    def __init__(self, reporter: PlainReporter, count: _Count) -> None:
        self._reporter, self._count = reporter, count
        self._start = self._last = reporter._clock()
        self._printed = False
        self._closed = False

    def _due(self) -> bool:
        now = self._reporter._clock()
        if now - self._last < self._reporter.interval:
            return False
        self._last = now
        return True

    def advance(self, amount: int = 1, *, size: int = 0) -> None:
        self._count.done += amount
        self._count.size += size
        finished = self._count.total is not None and self._count.done >= self._count.total
        if not finished and self._due():  # the last one is said by `close`
            self._line(self._count.text(self._reporter._clock() - self._start))

    def note(self, text: str) -> None:
        if self._due():
            self._line(text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._printed:
            elapsed = self._reporter._clock() - self._start
            self._line(f"done: {self._count.text(elapsed, final=True)}")

    def _line(self, text: str) -> None:
        self._printed = True
        self._reporter.emit(f"{self._count.label}: {text}")


class RichReporter:
    """Bars on stderr with rich; started with the first step, stopped with the last.

    `redirect_stdout`: print what goes to stdout above the bars (stdout is this terminal).
    """

    def __init__(self, redirect_stdout: bool = True) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}", style="dim"),
            console=self.console,
            transient=True,
            # stdout lines are printed above the bars when stdout is this terminal too;
            # otherwise (a file, a pipe, JSON events) it is left alone
            redirect_stdout=redirect_stdout,
            redirect_stderr=False,
        )
        self._lock = threading.RLock()
        self._open = 0

    def step(self, label: str, total: int | None, unit: str, total_size: int | None) -> Step:
        with self._lock:
            if self._open == 0:
                self._progress.start()
            self._open += 1
            count = _Count(label, total, unit, total_size)
            bar_total = total_size or total
            task = self._progress.add_task(label, total=bar_total, counts="", note="")
        return _RichStep(self, task, count)

    def print(self, line: str) -> None:
        """Print a line above the bars (log records while they are shown)."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def update(self, task: Any, **fields: Any) -> None:
        with self._lock:
            self._progress.update(task, **fields)

    def finish(self, task: Any) -> None:
        with self._lock:
            self._progress.remove_task(task)
            self._open -= 1
            if self._open == 0:
                self._progress.stop()

    def stop(self) -> None:
        with self._lock:
            if self._open:
                self._open = 0
                self._progress.stop()


class _RichStep:
    def __init__(self, reporter: RichReporter, task: Any, count: _Count) -> None:
        self._reporter, self._task, self._count = reporter, task, count
        self._closed = False
        self._show()

    def _show(self) -> None:
        c = self._count
        counts = f"{c.done:,}/{c.total:,}" if c.total is not None else f"{c.done:,}"
        counts += f" {c.unit}"
        if c.total_size:
            counts += f" {size_text(c.size)}/{size_text(c.total_size)}"
        elif c.size:
            counts += f" {size_text(c.size)}"
        completed = c.size if c.total_size else c.done
        self._reporter.update(self._task, completed=completed, counts=counts.strip())

    def advance(self, amount: int = 1, *, size: int = 0) -> None:
        self._count.done += amount
        self._count.size += size
        self._show()

    def note(self, text: str) -> None:
        self._reporter.update(self._task, note=text)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._reporter.finish(self._task)
