"""Full-line comments and blank lines of a YAML document: lift them out, put them back.

ruamel.yaml's round trip keeps end-of-line comments, but it hangs a full-line comment on
whatever precedes it, so moving a key would drag the comment written above the next key
along with it, and a re-indented block would leave its comments at their old columns. So
segops.config.fmt hands ruamel the document without them and puts them back here, by entry (a
mapping key or a list item, named by its key path, which formatting does not change):

- lines indented no deeper than the entry after them go *before* that entry, at its new
  column: a comment describes what follows, and moves with it;
- deeper lines go *after* the block they close, at their depth in it: commented-out keys at
  the end of a mapping stay at its end;
- above the document, lines up to the last blank line are the file's header and stay on
  top; the lines after it belong to the first key.

Runs of blank lines become one; none are kept at the start or end of a document, or
where a block opens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from segops.config.documents import KeyPath


def put_back(
    lines: list[str], loose: set[int], root: Node, out: list[str], out_root: Node
) -> list[str]:
    """Return `out`, the formatted form of `lines` without its `loose` lines, with them put back.

    `root` and `out_root` are the composed nodes of the document before and after.
    """
    old, new = _entries(root, lines), _entries(out_root, out)
    return _assemble(out, _placements(lines, sorted(loose), old, new, len(out)))


@dataclass(frozen=True, slots=True)
class _Entry:
    """A mapping key or list item (or the document itself): its line and column, from 0."""

    path: KeyPath
    line: int
    column: int  # of the key, or of the `-` of a list item


@dataclass(frozen=True, slots=True)
class _Placed:
    """Lines to put back before output line `before`."""

    before: int
    rank: tuple[int, ...]  # order among lines put back at the same place
    lines: tuple[str, ...]


def loose_lines(lines: list[str], root: Node) -> tuple[set[int], set[int]]:
    """Return the comment and blank lines that are layout, not part of a scalar, and the
    comment lines inside a multi-line flow collection (which ruamel would drop)."""
    inside: set[int] = set()
    in_flow: set[int] = set()
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        spanned = range(node.start_mark.line + 1, node.end_mark.line + bool(node.end_mark.column))
        if isinstance(node, ScalarNode):
            inside.update(spanned)
        elif getattr(node, "flow_style", False):
            inside.update(spanned)
            in_flow.update(n for n in spanned if lines[n].lstrip().startswith("#"))
        elif isinstance(node, MappingNode):
            stack.extend(item for pair in node.value for item in pair)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    loose = {
        number
        for number, line in enumerate(lines)
        if number not in inside and (not line.strip() or line.lstrip().startswith("#"))
    }
    return loose, in_flow


def _entries(root: Node, lines: Sequence[str]) -> list[_Entry]:
    """Return the document, then every key and item of its block collections, in order."""
    found = [_Entry((), root.start_mark.line, root.start_mark.column)]
    seen: set[int] = set()

    def walk(node: Node, path: KeyPath) -> None:
        if id(node) in seen or getattr(node, "flow_style", False):
            return
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, value in node.value:
                at = (*path, str(key.value))
                found.append(_Entry(at, key.start_mark.line, key.start_mark.column))
                walk(value, at)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                line, column = item.start_mark.line, item.start_mark.column
                before = lines[line][:column].rstrip() if line < len(lines) else ""
                dash = len(before) - 1 if before.endswith("-") else max(column - 2, 0)
                found.append(_Entry((*path, index), line, dash))
                walk(item, (*path, index))

    walk(root, ())
    return found


def _placements(
    lines: list[str], loose: list[int], old: list[_Entry], new: list[_Entry], size: int
) -> list[_Placed]:
    """Return where each run of loose lines goes in the formatted document of `size` lines."""
    placed: list[_Placed] = []
    for run in _runs(loose):
        prev = next((e for e in reversed(old) if e.line < run[0]), None)
        after = next((e for e in old if e.line > run[-1]), None)
        if prev is not None and run[-1] + 1 < len(lines) and _at(old, run[-1] + 1) is None:
            after, cut = prev, 0  # between a key and its value on a later line: above the key
        elif prev is None or (after is not None and _within(after, prev)):
            cut = 0  # the run opens a block (or the document): it belongs to what follows
        else:
            cut = len(run) if after is None else _cut(lines, run, after.column)
        if cut:
            assert prev is not None
            placed.extend(_feet(lines, run[:cut], prev, old, new, size))
        if cut < len(run):
            assert after is not None
            placed.extend(_heads(lines, run[cut:], after, old, new))
    return placed


def _heads(
    lines: list[str], run: list[int], after: _Entry, old: list[_Entry], new: list[_Entry]
) -> Iterator[_Placed]:
    """Yield the lines of `run` placed before the entry `after`, at its new column."""
    first = next((e for e in old if e.path and e.line == after.line), None)  # the first key
    blanks = [index for index, number in enumerate(run) if not lines[number].strip()]
    if not after.path and first is not None and blanks and blanks[-1] + 1 < len(run):
        # Above the document: the file's header, then (after its last blank line) what
        # belongs to the first key, which moves with that key.
        yield from _heads(lines, run[blanks[-1] + 1 :], first, old, new)
        run = run[: blanks[-1] + 1]
    target = _counterpart(after.path, new)
    column = target.column if (outer := _at(new, target.line)) is None else outer.column
    yield _Placed(target.line, (1, run[0]), tuple(_indented(lines[n], column) for n in run))


def _at(entries: list[_Entry], line: int) -> _Entry | None:
    """Return the outermost entry starting on `line`."""
    return next((e for e in entries if e.line == line), None)


def _runs(numbers: list[int]) -> Iterator[list[int]]:
    run: list[int] = []
    for number in numbers:
        if run and number != run[-1] + 1:
            yield run
            run = []
        run.append(number)
    if run:
        yield run


def _cut(lines: list[str], run: list[int], column: int) -> int:
    """Return how many leading lines of `run` close the block above (deeper than `column`)."""
    cut = 0
    for index, number in enumerate(run):
        if lines[number].strip() and _indent(lines[number]) > column:
            cut = index + 1
    return cut


def _feet(
    lines: list[str], run: list[int], prev: _Entry, old: list[_Entry], new: list[_Entry], size: int
) -> Iterator[_Placed]:
    """Yield the lines of `run` placed after the blocks they close, each at its depth."""
    chain = [e for e in old if _within(prev, e)]  # the document, then each block open at prev
    owners: list[int] = []  # index in chain of the innermost block holding each line
    for number in run:
        if lines[number].strip():
            indent = _indent(lines[number])
            inner = [i for i, e in enumerate(chain) if e.path and e.column < indent]
            owners.append(inner[-1] if inner else 0)
        else:  # a blank line goes with the comment before it
            owners.append(owners[-1] if owners else len(chain) - 1)
    groups: list[tuple[int, list[int]]] = []
    for number, owner in zip(run, owners, strict=True):
        if groups and groups[-1][0] == owner:
            groups[-1][1].append(number)
        else:
            groups.append((owner, [number]))
    for owner, numbers in groups:
        index = new.index(_counterpart(chain[owner].path, new))
        end = next((e.line for e in new[index + 1 :] if not _within(e, new[index])), size)
        text = tuple(_indented(lines[n], _column(lines[n], chain[owner:], new)) for n in numbers)
        yield _Placed(end, (0, numbers[0]), text)


def _column(line: str, chain: list[_Entry], new: list[_Entry]) -> int:
    """Return the new column of a line closing the block of chain[0], by the nearest level."""
    indent = _indent(line)
    level = chain[1] if len(chain) > 1 and chain[1].column <= indent else chain[0]
    return max(_counterpart(level.path, new).column + indent - level.column, 0)


def _counterpart(path: KeyPath, new: list[_Entry]) -> _Entry:
    """Return the formatted entry at `path`, or at its nearest ancestor that is there."""
    at = {entry.path: entry for entry in new}
    while path not in at:
        path = path[:-1]
    return at[path]


def _within(entry: _Entry, block: _Entry) -> bool:
    return entry.path[: len(block.path)] == block.path


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indented(line: str, column: int) -> str:
    return " " * column + line.strip() if line.strip() else ""


def _assemble(out: list[str], placed: list[_Placed]) -> list[str]:
    """Return the formatted lines with the loose lines put back."""
    at: dict[int, list[_Placed]] = {}
    for item in placed:
        at.setdefault(item.before, []).append(item)
    result: list[str] = []
    for index in range(len(out) + 1):
        extra = [line for p in sorted(at.get(index, []), key=lambda p: p.rank) for line in p.lines]
        opens = 0 < index < len(out) and _indent(out[index]) > _indent(out[index - 1])
        result.extend(tidy(extra, first=not result or opens, last=index == len(out)))
        if index < len(out):
            result.append(out[index])
    return result


def tidy(lines: list[str], first: bool, last: bool) -> list[str]:
    """Return `lines` with runs of blank lines made one, and none at the document's edges."""
    tidy = [line for n, line in enumerate(lines) if line or n == 0 or lines[n - 1]]
    while first and tidy and not tidy[0]:
        tidy.pop(0)
    while last and tidy and not tidy[-1]:
        tidy.pop()
    return tidy
