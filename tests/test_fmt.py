"""`segops fmt`: canonical manifests that keep comments; --check, errors, the bundled workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segops.config.fmt import _ORDER, format_text
from segops.errors import ManifestError
from tests.conftest import SEGOPS_YAML, run, write_tree

REPO = Path(__file__).resolve().parents[1]
LONG = ", then ".join(["Added an item to the cart in the last 7 days and did not buy"] * 3)

MESSY = """\
# yaml-language-server: $schema=../../schemas/segment.schema.json
# Cart abandoners, for both platforms.

spec:
    # where members come from
    source:
        on_bad_rows: skip
        csv: {path: ../data/cart.csv, delimiter: ";"}   # semicolons
        # ndjson: {path: ../data/cart.ndjson}
    destinations:
    -   segment_technical_name: cart_abandoners
        identifier: {format: sha256, kind: email_hash}
        # the datamart of the EU site
        datamart_id: "1509"
        connection: files-mics


    -   attribute: {type: string, name: email}
        connection: files-moe
        segment: {name: cart}
metadata:
    owner: crm-team    # the CRM team
    name: cart_abandoners_7d
    description: LONG
kind: Segment
apiVersion: segops/v1
""".replace("LONG", LONG)

# What MESSY becomes: keys in the documented order, 2-space indentation with list items
# under their key, each comment above the entry it was above (or, `# ndjson`, at the end
# of the mapping it closed), end-of-line comments on their line, quotes as written, a long
# line unwrapped, one blank line kept, a single trailing newline.
CANONICAL = """\
# yaml-language-server: $schema=../../schemas/segment.schema.json
# Cart abandoners, for both platforms.

apiVersion: segops/v1
kind: Segment
metadata:
  name: cart_abandoners_7d
  description: LONG
  owner: crm-team      # the CRM team
spec:
  # where members come from
  source:
    csv: {path: ../data/cart.csv, delimiter: ";"}       # semicolons
    on_bad_rows: skip
    # ndjson: {path: ../data/cart.ndjson}
  destinations:
    - connection: files-mics
      # the datamart of the EU site
      datamart_id: "1509"
      segment_technical_name: cart_abandoners
      identifier: {kind: email_hash, format: sha256}

    - connection: files-moe
      segment: {name: cart}
      attribute: {name: email, type: string}
""".replace("LONG", LONG)

SEGMENT = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: %s}
spec:
  source:
    csv: {path: ../data/m.csv}
  destinations:
    - connection: files-mics
      datamart_id: "1509"
      segment_id: '48950'
      identifier: {kind: email_hash, format: sha256}
"""


def fmt(text: str) -> str:
    return format_text(text.encode(), "f.yaml")


# -- the canonical form --------------------------------------------------------------------


def test_keys_ordered_comments_kept() -> None:
    assert fmt(MESSY) == CANONICAL


def test_idempotent() -> None:
    assert fmt(CANONICAL) == CANONICAL
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        once = format_text(path.read_bytes(), path.name)
        assert fmt(once) == once, path


def test_quotes_numbers_and_nulls_keep_their_meaning() -> None:
    text = 'a: "1509"\nb: \'48950\'\nc: 0123\nd: 1_000\ne: yes\nf: 2024-01-01\ng: "x: y"\n'
    assert fmt(text) == text


def test_documents_and_newlines() -> None:
    one, two = SEGMENT % "one", SEGMENT % "two"
    assert fmt(f"{one}---\n# the second\n{two}---\n") == f"{one}---\n# the second\n{two}"
    assert fmt(f"---\n{one}\n\n\n") == f"---\n{one}"  # an opening `---` stays
    assert fmt(one.replace("\n", "\r\n")) == one
    assert fmt("") == "" and fmt("\n\n") == ""
    assert fmt("# only a comment\n\n") == "# only a comment\n"


def test_blank_lines_collapse_and_leave_block_starts() -> None:
    text = "a:\n\n  b: 1\n\n\n\n  c: 2\n\nd: 3\n\n"
    assert fmt(text) == "a:\n  b: 1\n\n  c: 2\n\nd: 3\n"


def test_other_documents_are_formatted_not_reordered() -> None:
    text = "version: 1\nconnections:\n    files-mics:   # ndjson\n        platform: files\n"
    # an end-of-line comment keeps its column, so aligned comments stay aligned
    assert fmt(text) == text.replace("    ", "  ").replace("  # ndjson", "    # ndjson")
    assert fmt("kind: Other\napiVersion: x\n") == "kind: Other\napiVersion: x\n"


def test_comment_between_key_and_value_goes_above_the_key() -> None:
    assert fmt("a:\n  # why\n  1\n") == "# why\na: 1\n"


def test_merge_keys_are_left_in_place() -> None:
    merged = "    - <<: {datamart_id: '1'}\n      name: x\n      connection: files-moe\n"
    text = SEGMENT % "m" + merged
    assert fmt(text) == text


def test_refuses_a_comment_it_would_lose() -> None:
    with pytest.raises(ManifestError, match=r"f\.yaml:2: a comment inside a \[\.\.\.\] or"):
        fmt("a: {x: 1,\n  # lost\n  y: 2}\n")
    with pytest.raises(ManifestError, match="fmt would lose a comment"):
        fmt("a: [1,  # lost\n  2]\n")


def test_order_lists_every_key_the_schema_allows() -> None:
    schema = json.loads((REPO / "schemas" / "segment.schema.json").read_text())

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        return node

    for pattern, order in _ORDER.items():
        node = resolve(schema)
        for part in pattern:
            node = resolve(node["items"] if part == "*" else node["properties"][part])
        assert set(node["properties"]) <= set(order), pattern


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def ws(workspace: Path) -> Path:
    write_tree(
        workspace,
        {
            "segments/a.yaml": MESSY,
            "segments/b.yaml": SEGMENT % "b",
            "data/notes.yaml": "not:   a manifest\n",  # outside the manifest globs
        },
    )
    return workspace


def test_check_lists_what_would_change_and_changes_nothing(ws: Path) -> None:
    before = {p: p.read_bytes() for p in ws.rglob("*.yaml")}
    code, out, err = run(ws, "fmt", "--check")
    assert (code, out) == (1, "segments/a.yaml\n")
    assert "1 file to reformat" in err
    assert {p: p.read_bytes() for p in ws.rglob("*.yaml")} == before


def test_fmt_rewrites_then_check_passes(ws: Path) -> None:
    assert run(ws, "fmt") == (0, "segments/a.yaml\n", "")
    assert (ws / "segments/a.yaml").read_text() == CANONICAL
    assert (ws / "segops.yaml").read_text() == SEGOPS_YAML
    assert (ws / "data/notes.yaml").read_text() == "not:   a manifest\n"
    assert run(ws, "fmt", "--check") == (0, "", "")
    assert run(ws, "fmt") == (0, "", "")


def test_named_files(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("a:    1\n")
    code, out, _ = run(ws, "fmt", "--check", str(ws / "segments/b.yaml"), str(outside))
    assert (code, out) == (1, f"{outside}\n")
    assert run(ws, "fmt", str(ws / "data/notes.yaml"))[:2] == (0, "data/notes.yaml\n")
    assert (ws / "data/notes.yaml").read_text() == "not: a manifest\n"


def test_a_file_that_does_not_parse_stops_every_write(ws: Path) -> None:
    broken = "apiVersion: segops/v1\nkind: [Segment\n"
    write_tree(ws, {"segments/c.yaml": broken})
    code, out, err = run(ws, "fmt")
    assert (code, out) == (1, "")
    assert err.startswith("Error: segments/c.yaml:2: invalid YAML: the list opened with `[`")
    assert (ws / "segments/a.yaml").read_text() == MESSY  # formattable, but not written
    assert (ws / "segments/c.yaml").read_text() == broken


def test_writes_through_a_symlink(ws: Path) -> None:
    target = ws / "data/real.yaml"
    target.write_text(MESSY)
    (ws / "segments/a.yaml").unlink()
    (ws / "segments/a.yaml").symlink_to(target)
    assert run(ws, "fmt")[0] == 0
    assert (ws / "segments/a.yaml").is_symlink() and target.read_text() == CANONICAL


def test_needs_a_valid_segops_yaml(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, "fmt")
    assert code == 1 and "segops.yaml: not found" in err


def test_bundled_workspace_is_formatted() -> None:
    # manifests/ is the example users copy: it is kept in canonical form
    assert run(REPO / "manifests", "fmt", "--check") == (0, "", "")


def test_other_commands_do_not_import_ruamel() -> None:
    code = "import sys, segops.cli; sys.exit('ruamel.yaml' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
