"""Canonical formatting of Segment manifests and segops.yaml that keeps every comment.

The canonical form: 2-space indentation with list items indented under their key, no line
wrapping, quotes as written ("1509" stays a string), Segment keys in the order of
docs/manifests.md, one blank line at most, a single trailing newline, `---` between
documents. ruamel.yaml's round trip does the formatting; full-line comments and blank lines
go around it (segops.config.comments says how and why).

Every result is checked before it is used: read back by segops' own loader it must hold
the same data, and it must hold the same comments; otherwise the file is reported and left
as it is. The safe loader also reads every file first, so fmt refuses what validate refuses
to parse, with the same messages.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, merge_attrib
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.tokens import CommentToken

from segops._fs import atomic_write
from segops.config.comments import loose_lines, put_back, tidy
from segops.config.documents import MAX_FILE_BYTES, Document, load_documents
from segops.config.regular import UnreadableFile, read_regular

# fmt must find exactly the files plan reads, without loading (so validating) them: these
# two helpers of workspace.py do just that.
from segops.config.workspace import CONFIG_FILE, _Files, _manifest_files
from segops.errors import ManifestError, Problem

# Key order of Segment documents, as in docs/manifests.md; keys not listed follow the
# listed ones in their own order. "*" stands for every item of a list. A test checks that
# every key the schema allows at these paths is listed.
_ORDER: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("apiVersion", "kind", "metadata", "spec"),
    ("metadata",): ("name", "description", "owner", "labels"),
    ("spec",): ("source", "destinations", "safety"),
    ("spec", "safety"): ("max_removal_fraction", "max_removals", "allow_empty_source"),
    ("spec", "source"): ("csv", "ndjson", "parquet", "sql", "members", "on_bad_rows"),
    ("spec", "source", "csv"): ("path", "url", "connection", "hive_partitioning", "delimiter"),
    ("spec", "source", "ndjson"): ("path", "url", "connection", "hive_partitioning"),
    ("spec", "source", "parquet"): ("path", "url", "connection", "hive_partitioning"),
    ("spec", "source", "sql"): ("connection", "query", "query_file"),
    ("spec", "destinations", "*"): (
        "connection",
        "name",
        # mediarithmics
        "datamart_id",
        "segment_technical_name",
        "segment_id",
        "identifier",
        "compartment_id",
        "expiration_duration",
        "data_bag",
        "expiration_ts",
        # moengage
        "segment",
        "attribute",
        "expiry_days",
        "on_existing",
    ),
    ("spec", "destinations", "*", "identifier"): ("kind", "column", "format", "integers"),
    ("spec", "destinations", "*", "segment"): ("name", "cs_id"),
    ("spec", "destinations", "*", "attribute"): ("name", "type", "column", "format", "integers"),
}
# A document marker: always one at column 0, even where a scalar seems to continue.
_MARKER = re.compile(r"(?:---|\.\.\.)(?=\s|$)")
_OTHER_BREAKS = "\x85\u2028\u2029"  # line breaks to YAML's marks but not to str.split("\n")
_IN_FLOW = (
    "a comment inside a [...] or {...} that spans lines, which fmt would lose: move it out, "
    "or write the collection in block style"
)


@dataclass(frozen=True, slots=True)
class Reformat:
    """A file whose canonical form differs from its content."""

    path: Path
    name: str  # as shown: workspace-relative when the file is in the workspace
    text: str  # the canonical form


def workspace_files(root: Path) -> list[tuple[Path, str]]:
    """Return segops.yaml and every manifest its globs match, with workspace-relative names.

    Raises:
        ManifestError: segops.yaml is missing or invalid, or its globs match nothing usable.
    """
    files = _Files(root.resolve())
    found = [(files.root / CONFIG_FILE, CONFIG_FILE), *_manifest_files(files.config(), files)]
    if files.problems:
        raise ManifestError(files.problems)
    return found


def named_files(root: Path, paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """Return `paths` once each, named relative to the workspace `root` when inside it."""
    base = root.resolve()
    named: dict[Path, tuple[Path, str]] = {}
    for path in paths:
        resolved = path.resolve()
        inside = resolved.is_relative_to(base)
        named.setdefault(
            resolved, (path, resolved.relative_to(base).as_posix() if inside else str(path))
        )
    return list(named.values())


def find_reformats(files: Sequence[tuple[Path, str]]) -> tuple[Reformat, ...]:
    """Return the files of (path, name) pairs whose canonical form differs; write nothing.

    Raises:
        ManifestError: every file that cannot be read or formatted, all at once.
    """
    found: list[Reformat] = []
    problems: list[Problem] = []
    for path, name in files:
        try:
            data = _read(path, name)
            text = format_text(data, name)
        except ManifestError as error:
            problems.extend(error.problems)
            continue
        if text.encode() != data:
            found.append(Reformat(path, name, text))
    if problems:
        raise ManifestError(problems)
    return tuple(found)


def write_reformats(reformats: Sequence[Reformat]) -> None:
    """Write each file's canonical form atomically (through a symlink, to its target)."""
    for reformat in reformats:
        atomic_write(reformat.path.resolve(), reformat.text.encode())


def format_text(data: bytes, file: str) -> str:
    """Return the canonical form of the YAML file content `data`; `file` names it in problems.

    Raises:
        ManifestError: `data` is not valid YAML (checked by segops.config.documents first), or
            cannot be formatted without changing its data or losing a comment.
    """
    before = load_documents(data, file)
    text = re.sub(r"\r\n?", "\n", data.decode("utf-8-sig"))
    if any(char in text for char in _OTHER_BREAKS):
        message = "holds a U+0085, U+2028 or U+2029 line break, which fmt cannot place"
        raise ManifestError([Problem(file, message)])
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    parts: list[list[str]] = []
    segments = _split(lines, file)
    for start, segment in segments:
        part = _format_segment(segment, start, file)
        if part:
            parts.append(part)
    # a file that opens with `---` keeps it; the other `---` lines go between documents
    opens = len(segments) > 1 and not any(line.strip() for line in segments[0][1])
    body = "\n---\n".join("\n".join(part) for part in parts)
    result = ("---\n" if opens else "") + body + "\n" if parts else ""
    _check_unchanged(before, text, result, file)
    return result


def _read(path: Path, name: str) -> bytes:
    try:
        return read_regular(path, MAX_FILE_BYTES + 1)  # one byte more tells it is too large
    except UnreadableFile as error:
        raise ManifestError([Problem(name, str(error))]) from None


def _split(lines: list[str], file: str) -> list[tuple[int, list[str]]]:
    """Return (first line, lines) of each document between the `---` and `...` markers."""
    segments: list[tuple[int, list[str]]] = [(0, [])]
    for number, line in enumerate(lines):
        match = _MARKER.match(line)
        if match is None:
            segments[-1][1].append(line)
            continue
        rest = line[match.end() :].strip()
        if rest and not rest.startswith("#"):
            message = "fmt needs `---` on a line of its own: move what follows it to the next line"
            raise ManifestError([Problem(file, message, number + 1)])
        segments.append((number, [rest]) if rest else (number + 1, []))
    return segments


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 2**31 - 1  # never wrap: a long description or inline member stays on its line
    yaml.preserve_quotes = True  # "1509" stays a quoted string, 'x' keeps its single quotes
    return yaml


def _format_segment(lines: list[str], start: int, file: str) -> list[str]:
    """Return the canonical lines of one document; [] when it holds nothing at all.

    `start` is the file line (from 0) of lines[0], to locate problems.
    """
    try:
        root = _yaml().compose(_text(lines))
        if root is None:  # comments only
            return tidy([line.strip() for line in lines], first=True, last=True)
        loose, in_flow = loose_lines(lines, root)
        if in_flow:
            raise ManifestError([Problem(file, _IN_FLOW, start + min(in_flow) + 1)])
        data = _yaml().load(_text(line for n, line in enumerate(lines) if n not in loose))
        if isinstance(data, CommentedMap) and data.get("kind") == "Segment":
            _canonical_order(data)
        stream = StringIO()
        _yaml().dump(data, stream)
        out = stream.getvalue().split("\n")
        while out and out[-1] in ("", "..."):  # `...` closes a plain scalar document
            out.pop()
        return put_back(lines, loose, root, out, _yaml().compose(_text(out)))
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = start + mark.line + 1 if mark else None
        raise ManifestError([Problem(file, f"invalid YAML: {error.problem}", line)]) from None
    except YAMLError as error:
        raise ManifestError([Problem(file, f"invalid YAML: {error}")]) from None


def _text(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


# -- key order -----------------------------------------------------------------------------


def _canonical_order(document: CommentedMap) -> None:
    for pattern, order in _ORDER.items():
        for mapping in _find(document, pattern):
            if getattr(mapping, merge_attrib, None):
                continue  # `<<` merge keys: reordering would copy the merged keys in
            rank = {key: index for index, key in enumerate(order)}
            for key in sorted(mapping, key=lambda key: rank.get(key, len(order))):
                mapping.move_to_end(key)


def _find(node: Any, pattern: tuple[str, ...]) -> Iterator[CommentedMap]:
    if not pattern:
        if isinstance(node, CommentedMap):
            yield node
    elif pattern[0] == "*":
        if isinstance(node, CommentedSeq):
            for item in node:
                yield from _find(item, pattern[1:])
    elif isinstance(node, CommentedMap) and pattern[0] in node:
        yield from _find(node[pattern[0]], pattern[1:])


# -- the safety check ----------------------------------------------------------------------


def _check_unchanged(before: tuple[Document, ...], text: str, result: str, file: str) -> None:
    """Refuse a result that reads back differently or lost or changed a comment."""
    try:
        after = load_documents(result.encode(), file)
    except ManifestError:
        after = ()
    data_before = [doc.data for doc in before if doc.data is not None]
    data_after = [doc.data for doc in after if doc.data is not None]
    if data_before != data_after:
        message = "fmt would change what this file says (a bug: please report it)"
    elif _comments(text) != _comments(result):
        message = "fmt would lose a comment (one inside a multi-line [...] or {...}?)"
    else:
        return
    raise ManifestError([Problem(file, f"{message}; the file is left as it is")])


def _comments(text: str) -> Counter[str]:
    """Return every comment line of `text`, without its indentation."""
    found: dict[int, CommentToken] = {}

    def collect(value: Any) -> None:
        if isinstance(value, CommentToken):
            found[id(value)] = value
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    for token in _yaml().scan(text):
        collect(token)
        collect(getattr(token, "_comment", None))
    return Counter(
        line.strip()
        for token in found.values()
        for line in token.value.split("\n")
        if line.strip().startswith("#")
    )
