"""Colour for the text segops prints on a terminal: plans, apply results, errors.

Renderers stay pure and colourless (their text is also written to files and CI logs);
colour is laid over their lines here, by what each line starts with, only when the
session says stdout (or stderr) is a terminal that wants it. JSON and Markdown are never
coloured.
"""

from __future__ import annotations

import re
from typing import Final

RESET: Final = "\x1b[0m"
BOLD: Final = "\x1b[1m"
RED: Final = "\x1b[31m"
GREEN: Final = "\x1b[32m"
YELLOW: Final = "\x1b[33m"
CYAN: Final = "\x1b[36m"
_SIGN_COLOUR: Final = {"+": GREEN, "-": RED, "~": YELLOW, "-/+": RED}
_COUNT = re.compile(r"(?<![\w/])([+~-])(\d[\d,]*)(?=\s|$|\))")
_SYMBOL = re.compile(r"^( {2}[+~-] |-/\+ | {6}[+~-] )")


def paint(text: str, *styles: str) -> str:
    """Return `text` in `styles` (ANSI codes), reset after it."""
    return f"{''.join(styles)}{text}{RESET}" if text else text


def _counts(line: str) -> str:
    return _COUNT.sub(lambda m: paint(m[0], _SIGN_COLOUR[m[1]]), line)


def _plan_line(line: str) -> str:
    if line.startswith("  # "):
        return paint(line, BOLD)
    if line.lstrip().startswith("⛔"):
        return paint(line, BOLD, RED)
    if line.startswith("      members:"):
        return _counts(line)
    if line.startswith("      ! "):
        return paint(line, YELLOW)
    symbol = _SYMBOL.match(line)
    if symbol:
        sign = symbol[1].strip()
        return paint(symbol[1], _SIGN_COLOUR[sign], BOLD) + line[len(symbol[1]) :]
    if line.startswith(("Plan: ", "Members: ")):
        head, _, rest = line.partition(": ")
        return paint(f"{head}:", BOLD) + " " + _counts(rest)
    if line.startswith("No changes."):
        return paint("No changes.", BOLD, GREEN) + line[len("No changes.") :]
    if line.startswith("(only the segments"):
        return paint(line, CYAN)
    return line


def plan_text(text: str) -> str:
    """Return the text view of a plan (segops.render.human) in colour."""
    return "\n".join(_plan_line(line) for line in text.split("\n"))


def result_line(line: str) -> str:
    """Return one apply result line ("addr: done (...)", FAILED, pending) in colour."""
    address, sep, rest = line.partition(": ")
    if not sep:
        return line
    word, space, tail = rest.partition(" ")
    if word == "done":
        return f"{address}: {paint(word, GREEN)}{space}{_counts(tail)}"
    if word == "FAILED":
        return f"{address}: {paint(word, BOLD, RED)}{space}{tail}"
    if "pending on the" in rest:
        return f"{address}: {paint(rest, YELLOW)}"
    return line


def summary(line: str) -> str:
    """Return the closing line of an apply in colour."""
    stripped = line.lstrip("\n")
    lead = line[: len(line) - len(stripped)]
    if stripped.startswith("Apply complete!"):
        return lead + paint(stripped, BOLD, GREEN)
    if stripped.startswith(("Apply finished with errors", "Interrupted")):
        return lead + paint(stripped, BOLD, RED)
    return line


def error(line: str) -> str:
    """Return an error message with its label (Error:, Refused:, Usage error:) in red."""
    for label in ("Error:", "Refused:", "Usage error:"):
        if line.startswith(label):
            return paint(label, BOLD, RED) + line[len(label) :]
    return line


def warning(line: str) -> str:
    """Return a warning with its label in yellow."""
    label = "Warning:"
    return paint(label, BOLD, YELLOW) + line[len(label) :] if line.startswith(label) else line
