"""The exception tree of segops; the CLI maps each branch to an exit code.

    SegopsError
     ├── UsageError                 the command cannot work as called (no TTY, no --auto-approve)
     ├── ManifestError              segops.yaml or a manifest is malformed or inconsistent
     ├── SourceError                a source file cannot be read or holds bad rows
 ├── EngineError                the member engine cannot run (Spark cannot start or failed)
     ├── StateError                 the state cannot be read or written
     │    ├── StateLockedError      another process holds the state lock
     │    └── LostStateError        state.json is gone but traces of it remain
     ├── PlanError                  a plan file is unreadable
     │    └── StalePlanError        the state or an input moved since the plan was made
     ├── GuardError                 a safety guard stops the plan (exit code 3)
     └── DestinationError           a platform refused or failed a change
          └── RetryableDestinationError

Every error carries what a user needs to find the cause: the file, the line and
the key path where one exists, never a secret and never a member identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem: ``file:line: key.path: message``."""

    file: str
    message: str
    line: int | None = None
    path: str = ""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SegopsError(Exception):
    """Base of every error segops raises on purpose."""


class UsageError(SegopsError):
    """The command was called in a way that cannot work."""


class ManifestError(SegopsError):
    """One or more problems in segops.yaml or the manifests."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(SegopsError):
    """A source cannot be read, or holds rows that are not valid members."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class EngineError(SegopsError):
    """The member engine cannot run: Spark is not installed, cannot start or failed."""


class StateError(SegopsError):
    """The state cannot be read, parsed or written."""


class StateLockedError(StateError):
    """Another process holds the state lock."""


class LostStateError(StateError):
    """state.json is missing while traces of an earlier state remain: never start afresh."""


class PlanError(SegopsError):
    """A plan file cannot be read or does not belong to this workspace."""


class StalePlanError(PlanError):
    """The state or an input file changed since the plan was made."""


class GuardError(SegopsError):
    """A safety guard stops the plan; only an override bound to one saved plan lets it pass."""


class DestinationError(SegopsError):
    """A platform refused or failed a change."""


class RetryableDestinationError(DestinationError):
    """A transient platform failure (timeout, 429, 5xx)."""
