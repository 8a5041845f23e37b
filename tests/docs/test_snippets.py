"""Every segops command and workspace snippet in README.md and docs/ is run or validated.

The convention (also in docs/index.md, "How the examples are tested"):

Each page is read top to bottom, like a reader following it, in a temporary folder that
starts as a copy of the bundled example workspace (`manifests/`).

```yaml``` blocks
    - a whole segops.yaml (a line `version:` at the top level) starts a workspace of its
      own, in a new empty folder;
    - a Segment (a line `kind: Segment`) is written into the current workspace, at a file
      its `manifests` globs match, named after the segment (showing a segment again
      replaces it);
    - `<!-- fragment: segops.yaml -->` on the line before: the block's top-level keys are
      merged into the current segops.yaml (mappings merge key by key);
    - `<!-- file: PATH -->` on the line before: the block is that file of the workspace.
    After each, `segops validate` must pass (JSON Schema and cross-checks, source columns
    included). A segops.yaml on its own waits for the page's next Segment.
```sh``` / ```console``` blocks
    Every line is a command, run in order in the current workspace; `$ ` prompts are
    allowed. `segops ...` runs the CLI (with no SEGOPS* variable in the environment) and must
    exit 0, or N when the line ends with a comment saying `# exit N`. `make TARGET` must
    name a target of the Makefile (it is not run). `export`, `cd`, `mkdir` and
    `[.venv/bin/]python -m emulators.NAME ...` (started on a free port, stopped at the end of
    the page) are understood; any other command needs the block marked not-checked.
    `segops ... < FILE` reads standard input from FILE and `> FILE` writes standard output.
    In a console block, the lines after a `$ segops ...` line are its output and must be the
    real output, line for line; a line `...` stands for any number of lines.
Data blocks
    csv / ndjson blocks need `<!-- file: PATH -->` (they are written into the workspace).
Hidden steps
    `<!-- run: COMMAND -->` runs a command the reader need not see (e.g. an apply that sets
    up state). A comment whose first line is `<!-- file: PATH` and whose last line is `-->`
    writes the lines between to PATH (e.g. the CSV a Segment example reads).
Blocks that cannot be checked
    `<!-- not-checked: REASON -->` on the line before. They are counted and listed; the test
    below keeps the list short.

Other blocks (diagrams, file trees, sample outputs in ```text```) are not read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.markdown import Block, read_steps
from tests.docs.runner import REPO, SHELL, YAML, PageRun, Tally

PAGES = [
    Path("README.md"),
    *sorted(p.relative_to(REPO) for p in (REPO / "docs").rglob("*.md")),
]
# Raise it only with a reason a reviewer accepts. 6: the S3 state example of ci.md stays
# unchecked until the S3 state backend lands (then back to 5).
MAX_UNCHECKED = 5

TALLY = Tally()


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_page(page: Path, tmp_path: Path) -> None:
    steps = read_steps((REPO / page).read_text(encoding="utf-8"), str(page))
    run = PageRun(str(page), tmp_path, TALLY)
    try:
        for step in steps:
            run.step(step)
        run.check_validated()
    finally:
        run.close()


def all_blocks() -> list[Block]:
    return [
        step
        for page in PAGES
        for step in read_steps((REPO / page).read_text(encoding="utf-8"), str(page))
        if isinstance(step, Block)
    ]


def test_few_blocks_are_not_checked() -> None:
    unchecked = [b for b in all_blocks() if b.marker and b.marker[0] == "not-checked"]
    listing = "\n".join(f"  {b.where}: {b.marker[1]}" for b in unchecked if b.marker)
    assert len(unchecked) <= MAX_UNCHECKED, f"too many unchecked blocks:\n{listing}"
    assert all(b.marker and b.marker[1] for b in unchecked), "each says why"


def test_most_blocks_are_checked() -> None:
    """Guard against a harness that silently skips: most yaml and shell blocks are checked."""
    blocks = [b for b in all_blocks() if b.lang in YAML | SHELL]
    checked = [b for b in blocks if not (b.marker and b.marker[0] == "not-checked")]
    assert len(blocks) >= 20 and len(checked) >= 0.8 * len(blocks)


_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?:#[^)\s]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_relative_links_resolve(page: Path) -> None:
    text = (REPO / page).read_text(encoding="utf-8")
    text = re.sub(r"`+[^`]*`+", "", text)  # code spans: a regex there is not a link
    targets = [m.group("target") for m in _LINK.finditer(text)]
    local = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    missing = [t for t in local if not ((REPO / page).parent / t).exists()]
    assert not missing, f"{page}: links to missing files: {missing}"


# `pip install segops`, `"segops==0.1"`, `segops[dev]`; not `"segops @ git+https://..."`
_PYPI_INSTALL = re.compile(
    r"pip3? install\s+(?:-\S+\s+)*[\"']?segops(?:\[[^\]]*\])?(?![\w-])(?!\s*@)"
)


def test_no_page_installs_segops_from_the_package_index() -> None:
    """`segops` on PyPI is an unrelated project: only a warning may name that command."""
    recipes = sorted(p.relative_to(REPO) for p in (REPO / "recipes").rglob("*.yml"))
    assert len(recipes) == 2, recipes  # the GitHub Actions and the GitLab CI recipes
    files = [*PAGES, *recipes, Path(".pre-commit-hooks.yaml")]
    bad = [
        f"{path}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate((REPO / path).read_text().splitlines(), 1)
        if _PYPI_INSTALL.search(line) and "unrelated" not in line
    ]
    assert not bad, "install segops from the repository, never from PyPI:\n" + "\n".join(bad)
