"""Read a Markdown page into the steps tests/docs/test_snippets.py checks: code blocks and
the HTML-comment markers of the convention described there. Pure: no files written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_MARKER = re.compile(r"^\s*<!--\s*(?P<key>[a-z-]+):\s*(?P<value>.*?)\s*(?:-->\s*)?$")

# The marker keys of the convention; any other HTML comment is ordinary text.
MARKER_KEYS = frozenset({"file", "fragment", "not-checked", "run"})


@dataclass(frozen=True, slots=True)
class Block:
    """A fenced code block and the marker on the line directly before it (if any)."""

    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: tuple[str, str] | None = None  # (key, value), e.g. ("file", "segops.yaml")

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True, slots=True)
class Hidden:
    """A step written in an HTML comment, invisible to readers.

    `<!-- run: segops apply --auto-approve -->` runs a command; a multi-line comment whose
    first line is `<!-- file: PATH` writes the lines up to `-->` to PATH.
    """

    page: str
    line: int
    key: str  # "run" or "file"
    value: str  # the command, or the file's path
    text: str = ""  # the file's content

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


Step = Block | Hidden


class MarkupError(ValueError):
    """A marker the convention does not allow (named by page and line)."""


def read_steps(text: str, page: str) -> list[Step]:
    """Return the code blocks and hidden steps of a page, in page order."""
    lines = text.splitlines()
    steps: list[Step] = []
    pending: tuple[int, str, str] | None = None  # a marker waiting for the next line's fence
    index = 0
    while index < len(lines):
        line, number = lines[index], index + 1
        fence = _FENCE.match(line)
        if fence:
            end = _closing(lines, index, fence.group("fence"))
            indent = len(fence.group("indent"))
            body = "\n".join(_dedent(row, indent) for row in lines[index + 1 : end])
            marker = None
            if pending is not None and pending[0] == index:  # the line directly before
                marker = (pending[1], pending[2])
                pending = None
            steps.append(Block(page, number, fence.group("lang").lower(), body + "\n", marker))
            index = end + 1
            continue
        if pending is not None:
            raise MarkupError(
                f"{page}:{pending[0]}: <!-- {pending[1]}: ... --> must be on the line directly "
                "before a code block"
            )
        comment = _MARKER.match(line)
        if comment and comment.group("key") in MARKER_KEYS:
            key, value = comment.group("key"), comment.group("value")
            if line.rstrip().endswith("-->"):
                if key == "run":
                    steps.append(Hidden(page, number, key, value.removesuffix("-->").strip()))
                else:
                    pending = (number, key, value.removesuffix("-->").strip())
            elif key == "file":
                close = next((i for i in range(index + 1, len(lines)) if "-->" in lines[i]), None)
                if close is None or lines[close].strip() != "-->":
                    raise MarkupError(f"{page}:{number}: a hidden file ends with a line `-->`")
                content = "\n".join(lines[index + 1 : close]) + "\n"
                steps.append(Hidden(page, number, key, value, content))
                index = close
            else:
                raise MarkupError(f"{page}:{number}: <!-- {key}: ... --> fits on one line")
        index += 1
    if pending is not None:
        raise MarkupError(f"{page}:{pending[0]}: marker at the end of the page, with no block")
    return steps


def _closing(lines: list[str], start: int, fence: str) -> int:
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            return index
    raise MarkupError(f"line {start + 1}: code block never closed")


def _dedent(row: str, indent: int) -> str:
    return row[indent:] if row[:indent].strip() == "" else row.lstrip()


def pages(repo: Path) -> list[Path]:
    """Return README.md and every page under docs/, relative to `repo`."""
    found = [Path("README.md"), *sorted(p.relative_to(repo) for p in (repo / "docs").rglob("*.md"))]
    return found
