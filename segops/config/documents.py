"""YAML text -> documents with the line of every key, checked against a JSON Schema; nothing else.

The only module that imports yaml. Loading is safe: a SafeLoader that keeps mapping keys
and dates as text, refuses duplicate keys, files over 5 MiB, text that is not UTF-8 (a
BOM is fine) and aliases that expand a document past 100,000 nodes ("billion laughs").
Every problem names the file, the line and the key path, e.g.
``manifests/a.yaml:12: spec.destinations[0].identifier.kind: must be one of ...``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from segops.errors import ManifestError, Problem

MAX_FILE_BYTES = 5 * 1024 * 1024
# Aliases may not expand a document past this many nodes; a document without aliases is
# bounded by MAX_FILE_BYTES instead, so a long alias-free file is not taken for a bomb.
MAX_EXPANDED_NODES = 100_000

KeyPath = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Rules(yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """What segops changes in PyYAML's safe loading: mapping keys are always strings and
    dates stay strings. Duplicate keys, non-scalar keys and alias bombs are caught on the
    node graph before anything is constructed (see `_Walker` and `_check_expansion`).
    """

    # `2024-01-01` stays text: JSON Schema and member values know no dates.
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)  # resolve `<<` merge keys; later keys win, as in PyYAML
        return {
            str(key.value): self.construct_object(value, deep=deep) for key, value in node.value
        }


class _PyLoader(_Rules, yaml.SafeLoader):
    """The pure-Python loader, used when PyYAML was built without libyaml."""


class _NodeLoader(Protocol):
    def check_node(self) -> bool: ...
    def get_node(self) -> Node | None: ...
    def construct_document(self, node: Node) -> Any: ...
    def dispose(self) -> None: ...


# The loaders by name, fastest first; the first is used, and tests run with each one.
LOADERS: dict[str, Callable[[str], _NodeLoader]] = {"python": _PyLoader}
if yaml.__with_libyaml__:

    class _CLoader(_Rules, yaml.CSafeLoader):
        """The libyaml loader: the same nodes, marks and errors, about three times faster."""

    LOADERS = {"libyaml": _CLoader, **LOADERS}
loader_name = next(iter(LOADERS))


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document of a file, with the 1-based line of every key path in it."""

    file: str  # as named in problems: workspace-relative posix path
    index: int  # position in the file, from 0
    data: Any
    # Mapping entries: the line of the key; sequence entries: the line of the item.
    lines: Mapping[KeyPath, int] = field(repr=False, compare=False)

    @property
    def line(self) -> int:
        """Return the line where the document's content starts."""
        return self.lines[()]

    def line_of(self, path: Sequence[str | int]) -> int:
        """Return the line of `path`, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key not in self.lines:
            key = key[:-1]
        return self.lines[key]

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """Return a Problem located at `path` in this document."""
        return Problem(self.file, message, self.line_of(path), format_path(path))


def format_path(path: Sequence[str | int]) -> str:
    """Return `path` as a dotted key path, e.g. ``spec.destinations[0].identifier.kind``.

    A key holding a line break or another invisible character is shown quoted, with its
    escapes (``connections["mics\\n"]``): a message stays on one line and shows the key.
    """
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.isprintable():
            text += f"[{json.dumps(part)}]"
        else:
            text += f".{part}" if text else part
    return text


def load_documents(data: bytes, file: str) -> tuple[Document, ...]:
    """Return the YAML documents held in `data`; `file` names it in problems.

    Raises:
        ManifestError: the file is too large, not UTF-8 or not valid YAML, has duplicate
            keys, or aliases that expand too far.
    """
    if len(data) > MAX_FILE_BYTES:
        message = f"file is {len(data):,} bytes or more; the limit is {MAX_FILE_BYTES:,} (5 MiB)"
        raise ManifestError([Problem(file, message)])
    text = _decode(data, file)
    try:
        return _documents(text, file)
    except yaml.MarkedYAMLError as error:
        raise ManifestError([_syntax_problem(file, error, text)]) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        message = f"invalid YAML: character {error.character:#06x} is not allowed"
        raise ManifestError([Problem(file, message, line)]) from None
    except RecursionError:
        raise ManifestError([Problem(file, "invalid YAML: nested too deeply")]) from None


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start]
        message = f"not valid UTF-8 (byte {byte:#04x}); save the file as UTF-8"
        raise ManifestError([Problem(file, message, line)]) from None


def _documents(text: str, file: str) -> tuple[Document, ...]:
    loader = LOADERS[loader_name](text)
    documents: list[Document] = []
    problems: list[Problem] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            assert node is not None  # check_node() said a document follows
            _check_expansion(node, file)
            walker = _Walker(file)
            walker.walk(node, ())
            problems.extend(walker.problems)
            data = None if walker.problems else loader.construct_document(node)
            documents.append(Document(file, len(documents), data, walker.lines))
    finally:
        loader.dispose()
    if problems:
        raise ManifestError(problems)
    return tuple(documents)


def _syntax_problem(file: str, error: yaml.MarkedYAMLError, text: str) -> Problem:
    """Say what a YAML syntax error means for people, on the line to fix, with a caret.

    An unclosed bracket or quote is only noticed lines later, at the next key or at the end
    of the file: the line of the opening bracket (the context mark) is what to fix, and the
    message says where the parser gave up.
    """
    mark, context = error.problem_mark, error.context_mark
    where, message = _explain(error, text)
    if where is None:  # a problem segops has no words for: the parser's own
        where = mark or context
        message = f"{error.problem or error.context}"
        if mark is not None:
            message += f" at column {mark.column + 1}"
        if error.context and error.problem:
            message += f", {error.context}"
            if context is not None and (mark is None or context.line != mark.line):
                message += f" that starts at line {context.line + 1}, column {context.column + 1}"
    if where is None:
        return Problem(file, f"invalid YAML: {message}")
    return Problem(file, f"invalid YAML: {message}\n{_caret(text, where)}", where.line + 1)


def _explain(error: yaml.MarkedYAMLError, text: str) -> tuple[yaml.Mark | None, str]:
    """Return where to point and what to say for the syntax errors people make most."""
    problem, context = error.problem or "", error.context or ""
    mark, start = error.problem_mark, error.context_mark
    if mark is None:
        return None, ""
    char = _char_at(text, mark)
    opened = f"line {start.line + 1}" if start is not None else "above"
    gave_up = f"(the file reads on to line {mark.line + 1} without finding it)"
    if "flow sequence" in context and start is not None:
        return start, f"the list opened with `[` here is not closed: add `]` {gave_up}"
    if "flow mapping" in context and start is not None:
        return start, f"the mapping opened with `{{` here is not closed: add `}}` {gave_up}"
    if "quoted scalar" in context and start is not None:
        quote = _char_at(text, start) or '"'
        return start, f"the value quoted with {quote} here is not closed: add the closing {quote}"
    if "could not find expected ':'" in problem and start is not None:
        return start, "a line that is not `key: value`: add the colon, with a space after it"
    if "mapping values are not allowed" in problem:
        return mark, (
            "a `:` YAML cannot read here: put a value that holds `: ` in quotes, or indent this "
            "key like the keys above it"
        )
    unaligned = "did not find expected key" in problem or "expected <block end>" in problem
    if unaligned and "block mapping" in context:
        if char == "-":
            return mark, (
                f"a list item where the mapping that starts at {opened} expects a key: indent "
                "the item under the key it belongs to"
            )
        return mark, (
            f"this line does not line up with the keys of the mapping that starts at {opened}: "
            "indent it like them, with spaces"
        )
    if "expected '-' indicator" in problem or (unaligned and "block collection" in context):
        return mark, (
            f"this line does not line up with the items of the list that starts at {opened}: "
            "start it with `- `, or indent it under an item"
        )
    if "tab character" in problem or ("cannot start any token" in problem and char == "\t"):
        return mark, "a tab: YAML indents with spaces only"
    if "cannot start any token" in problem:
        if char == "\t":
            return mark, "a tab: YAML indents with spaces only"
        return mark, f"a value cannot start with {char!r}: put the value in quotes"
    if "undefined alias" in problem:
        return mark, "this alias (`*name`) is used before an anchor (`&name`) defines it"
    if "expected <document start>" in problem:
        return mark, "text after the end of the document: start a new one with `---`, or remove it"
    return None, ""


def _char_at(text: str, mark: yaml.Mark) -> str:
    lines = text.splitlines()
    if mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return ""
    return lines[mark.line][mark.column]


def _caret(text: str, mark: yaml.Mark, width: int = 100) -> str:
    """Return the line of `mark` and a caret under its column, like a compiler does."""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    column = min(mark.column, len(line))
    if len(line) > width:  # a window around the caret
        start = max(0, min(column - width // 2, len(line) - width))
        line, column = line[start : start + width], column - start
    shown = "".join(c if c.isprintable() else " " for c in line)
    number = str(mark.line + 1)
    gutter = " " * len(number)
    return f"  {number} | {shown}\n  {gutter} | {' ' * column}^"


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _check_expansion(root: Node, file: str) -> None:
    """Refuse recursive aliases and aliases that expand the document past the limit."""
    distinct: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in distinct:
            distinct.add(id(node))
            stack.extend(_children(node))
    limit = max(MAX_EXPANDED_NODES, len(distinct))
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:  # memoised: each distinct node is counted once
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise ManifestError([Problem(file, "recursive alias", node.start_mark.line + 1)])
        active.add(id(node))
        total = 1 + sum(size(child) for child in _children(node))
        active.discard(id(node))
        if total > limit:
            message = f"alias expansion too large: more than {limit:,} nodes"
            raise ManifestError([Problem(file, message, node.start_mark.line + 1)])
        sizes[id(node)] = total
        return total

    size(root)


class _Walker:
    """Records the line of every key path and finds duplicate or non-string keys."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[Problem] = []
        self._checked: set[int] = set()  # mappings already checked (an alias is checked once)

    def walk(self, node: Node, path: KeyPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))
        elif isinstance(node, MappingNode):
            self._walk_mapping(node, path, frozenset())

    def _walk_mapping(self, node: MappingNode, path: KeyPath, taken: frozenset[str]) -> set[str]:
        """Walk `node`'s entries except the `taken` keys; return the keys it defines."""
        first = id(node) not in self._checked
        self._checked.add(id(node))
        own: dict[str, int] = {}
        merged: list[MappingNode] = []
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.tag == _MERGE_TAG:
                merged.extend(_merge_sources(value))
            elif not isinstance(key, ScalarNode):
                self._report(first, line, path, "a mapping key must be a plain string")
            elif key.value in own:
                message = f"duplicate key {key.value!r} (first at line {own[key.value]})"
                self._report(first, line, (*path, key.value), message)
            else:
                own[key.value] = line
                if key.value not in taken:
                    self.lines[(*path, key.value)] = line
                    self.walk(value, (*path, key.value))
        defined = set(taken) | set(own)
        for source in merged:  # a mapping's own keys win over merged ones, earlier merges win
            defined |= self._walk_mapping(source, path, frozenset(defined))
        return defined

    def _report(self, first: bool, line: int, path: KeyPath, message: str) -> None:
        if first:
            self.problems.append(Problem(self.file, message, line, format_path(path)))


def _merge_sources(node: Node) -> list[MappingNode]:
    if isinstance(node, MappingNode):
        return [node]
    if isinstance(node, SequenceNode):
        return [item for item in node.value if isinstance(item, MappingNode)]
    return []  # PyYAML reports the bad merge when constructing
