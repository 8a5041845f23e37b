"""What the exact readers raise at the first line that breaks their format's rules."""

from __future__ import annotations


class UnreadableRow(Exception):
    """A line (or Parquet row) the format refuses: where, and why in segops' own words.

    The message never holds the line's content: a line holds member identifiers.
    """

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
