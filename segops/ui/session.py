"""One command's terminal: colour, progress and logs, decided once from flags and env."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Final, TextIO

from segops import observe
from segops.errors import UsageError
from segops.ui.logs import Logs
from segops.ui.progress import DEFAULT_INTERVAL, INTERVAL_ENV, PlainReporter, RichReporter

RICH, PLAIN, OFF = "rich", "plain", "off"
_CI_VARIABLES: Final = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "TF_BUILD")


def is_terminal(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Return whether `stream` is an interactive terminal that understands colour."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False
    return tty and env.get("TERM", "") != "dumb"


def in_ci(env: Mapping[str, str]) -> bool:
    """Return whether a CI system runs this command (its log is read later, not watched)."""
    values = (env.get(name, "").strip().lower() for name in _CI_VARIABLES)
    return any(value not in ("", "0", "false") for value in values)


def colour_wanted(no_color: bool, env: Mapping[str, str], stream: TextIO) -> bool:
    """Return whether text on `stream` gets colour: a terminal, and neither --no-color nor
    NO_COLOR (https://no-color.org: any non-empty value)."""
    return not no_color and not env.get("NO_COLOR") and is_terminal(stream, env)


def progress_mode(no_progress: bool, env: Mapping[str, str], stream: TextIO) -> str:
    """Return how steps are shown on `stream`: rich bars, plain lines, or not at all."""
    if no_progress:
        return OFF
    return RICH if is_terminal(stream, env) and not in_ci(env) else PLAIN


def _interval(env: Mapping[str, str]) -> float:
    given = env.get(INTERVAL_ENV, "").strip()
    if not given:
        return DEFAULT_INTERVAL
    try:
        value = float(given)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:
        raise UsageError(f"{INTERVAL_ENV}={given!r}: give a number of seconds, 0 or more")
    return value


@dataclass
class Session:
    """What the global options decided for this command; `close` undoes it."""

    colour: bool  # colour on stdout
    err_colour: bool  # colour on stderr
    progress: str
    logs: Logs | None = None
    rich: RichReporter | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def start(
        cls, verbose: int, no_color: bool, no_progress: bool, env: Mapping[str, str]
    ) -> Session:
        mode = progress_mode(no_progress, env, sys.stderr)
        interval = _interval(env)
        session = cls(
            colour_wanted(no_color, env, sys.stdout),
            colour_wanted(no_color, env, sys.stderr),
            mode,
        )
        reporter: observe.Reporter | None = None
        if mode == RICH:
            session.rich = RichReporter(redirect_stdout=is_terminal(sys.stdout, env))
            reporter = session.rich
            session._stack.callback(session.rich.stop)
        elif mode == PLAIN:
            reporter = PlainReporter(_stderr, interval)
        write = session.rich.print if session.rich is not None else None
        session.logs = Logs(verbose, env, write)
        session._stack.callback(session.logs.close)
        if reporter is not None:
            session._stack.enter_context(observe.reporting(reporter))
        return session

    def close(self) -> None:
        self._stack.close()


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def default() -> Session:
    """Return the session of a command run without the callback (library use, tests)."""
    return Session(False, False, OFF)
