"""Logs: `-v`/`-vv` or SEGOPS_LOG on stderr, and SEGOPS_LOG_FILE as JSON lines.

Stages log through `logging.getLogger("segops.<area>")` with the facts of an event in
`extra` (method, path, status, attempt, duration of an HTTP call...). Only the `segops`
logger is configured: libraries (botocore, httpx, urllib3) keep their own silence, since
their debug logs print request headers, hence credentials.

What is logged names operations, addresses, paths and counts: never a secret, never a member
identifier, never a query string. As a second line of defence, every record is scrubbed of
the values of secret-looking environment variables and of the credentials apply resolved
(`hide`) before it is written anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, TextIO

from segops.errors import UsageError

LOG_ENV: Final = "SEGOPS_LOG"
LOG_FILE_ENV: Final = "SEGOPS_LOG_FILE"
LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING}
_ALIASES: Final = {"warning": "warn", "error": "warn"}
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSW|CREDENTIAL|AUTH|SESSION", re.IGNORECASE)
_MIN_SECRET = 6
# LogRecord attributes that are not facts of the event (everything else in __dict__ is extra)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def level_of(verbose: int, env: Mapping[str, str]) -> int:
    """Return the level for `verbose` (-v count) or SEGOPS_LOG; warnings by default.

    Raises:
        UsageError: SEGOPS_LOG holds something else than debug, info or warn.
    """
    if verbose:
        return logging.INFO if verbose == 1 else logging.DEBUG
    given = env.get(LOG_ENV, "").strip().lower()
    if not given:
        return logging.WARNING
    name = _ALIASES.get(given, given)
    if name not in LEVELS:
        raise UsageError(f"{LOG_ENV}={json.dumps(given)}: use debug, info or warn")
    return LEVELS[name]


class _Scrub(logging.Filter):
    """Blank out secret values from every record's message and facts."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = _blank(record.getMessage(), self.secrets)
        record.msg, record.args = message, None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, _blank(value, self.secrets))
        return True


def _blank(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[secret]")
    return text


class _Text(logging.Formatter):
    """`12:04:05.120 debug http: POST /v1/... -> 200 in 0.05 s (attempt 1)`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        area = record.name.removeprefix("segops").lstrip(".") or "segops"
        level = {logging.WARNING: "warn"}.get(record.levelno, record.levelname.lower())
        return f"{stamp}.{int(record.msecs):03d} {level} {area}: {record.getMessage()}"


class _JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the event's facts."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": {logging.WARNING: "warn"}.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        return json.dumps(entry, ensure_ascii=False)


class _Writer(logging.Handler):
    """Write formatted records through `write` (rich's console while bars are shown)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:  # a log line must never stop a command
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop a record that cannot be written: logging's own report is a traceback."""


class _File(logging.StreamHandler[TextIO]):
    def handleError(self, record: logging.LogRecord) -> None:
        """Drop a record that cannot be written: logging's own report is a traceback."""


class Logs:
    """The `segops` logger as configured for one command; `close` undoes it."""

    def __init__(
        self,
        verbose: int,
        env: Mapping[str, str],
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.level = level_of(verbose, env)
        self.logger = logging.getLogger("segops")
        self._handlers: list[logging.Handler] = []
        self._file: TextIO | None = None
        secrets = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET}
        self._scrub = _Scrub(secrets)
        self._saved = (self.logger.level, self.logger.propagate)
        console = _Writer(write or _stderr)
        console.setLevel(self.level)
        console.setFormatter(_Text())
        self._add(console)
        path = env.get(LOG_FILE_ENV, "")
        file_level = self.level if (verbose or env.get(LOG_ENV)) else logging.INFO
        if path:
            self._open(Path(path), file_level)
        self.logger.setLevel(min(h.level for h in self._handlers))
        self.logger.propagate = False  # the root logger (and pytest's) sees none of it

    def _add(self, handler: logging.Handler) -> None:
        handler.addFilter(self._scrub)
        self.logger.addHandler(handler)
        self._handlers.append(handler)

    def _open(self, path: Path, level: int) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as error:
            raise UsageError(f"{LOG_FILE_ENV}={path}: cannot open it: {error.strerror}") from None
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        handler = _File(self._file)
        handler.setLevel(level)
        handler.setFormatter(_JsonLines())
        self._add(handler)

    def hide(self, values: Iterable[str]) -> None:
        """Blank `values` (credentials) out of every record from now on."""
        self._scrub.secrets.update(v for v in values if len(v) >= _MIN_SECRET)

    def close(self) -> None:
        for handler in self._handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self._handlers = []
        if self._file is not None:
            self._file.close()
            self._file = None
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
