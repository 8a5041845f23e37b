"""A plan of the bytes last applied skips the diff; any other input diffs again.

Apply records, beside a destination's snapshot, the digest of the source bytes and of how
they were read; a plan that finds both unchanged knows the diff is empty without reading a
member. The digests decide: a rewritten file with the same bytes is still unchanged, one
changed byte is not. A source several destinations read the same way is read once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from segops.engine import sources
from segops.engine.duck import DuckDBEngine
from segops.state import model
from tests.conftest import (
    addresses_through,
    file_pin,
    mics_manifest,
    plan_json,
    run,
    write_tree,
)


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = [h(f"user{i}@example.com") for i in range(30)]
BAD_ROW = "not-a-hash"


def members(root: Path, hashes: list[str]) -> None:
    write_tree(root, {"data/cart.csv": "email_hash\n" + "".join(f"{x}\n" for x in hashes)})


def entry(root: Path) -> dict[str, Any]:
    state = json.loads((root / ".segops" / "state.json").read_text())
    return state["destinations"]["cart.files-mics"]  # type: ignore[no-any-return]


@pytest.fixture
def ws(workspace: Path) -> Path:
    source = "csv: {path: ../data/cart.csv}"
    write_tree(workspace, {"segments/cart.yaml": mics_manifest("cart", source)})
    members(workspace, HASHES[:20])
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    return workspace


@pytest.fixture
def diffs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the diffs the engine runs."""
    return addresses_through(monkeypatch, DuckDBEngine, "diff")


def test_apply_records_the_bytes_the_snapshot_holds(ws: Path) -> None:
    source = entry(ws)["source"]
    assert source["pin"] == file_pin(ws / "data" / "cart.csv")
    assert source["skipped"] == 0


def test_the_same_bytes_skip_the_diff(ws: Path, diffs: list[str]) -> None:
    members(ws, HASHES[:20])  # written again: new times, same bytes
    code, out, err = run(ws, "plan", "--detailed-exitcode")
    assert code == 0, err
    assert diffs == []
    assert "No changes" in out


def test_the_skipped_plan_has_the_bytes_of_a_diffed_one(ws: Path, diffs: list[str]) -> None:
    skipped = plan_json(ws)
    state = json.loads((ws / ".segops" / "state.json").read_text())
    del state["destinations"]["cart.files-mics"]["source"]
    # a state without the record (written by an older segops) diffs, and plans the same
    (ws / ".segops" / "state.json").write_text(json.dumps(_resigned(state)))
    diffed = plan_json(ws)
    assert diffs == ["cart.files-mics"]
    assert skipped == diffed


def test_other_bytes_are_diffed(ws: Path, diffs: list[str]) -> None:
    members(ws, [*HASHES[1:20], HASHES[25]])  # same size, one member swapped
    code, out, _ = run(ws, "plan", "--detailed-exitcode")
    assert code == 2
    assert diffs == ["cart.files-mics"]
    assert run(ws, "apply", "--auto-approve")[0] == 0
    diffs.clear()
    assert run(ws, "plan", "--detailed-exitcode")[0] == 0
    assert diffs == []


def test_another_reading_is_diffed(ws: Path, diffs: list[str]) -> None:
    members(ws, [*HASHES[:21], BAD_ROW])  # one more member, one bad row
    manifest = mics_manifest("cart", "csv: {path: ../data/cart.csv}\n    on_bad_rows: skip")
    write_tree(ws, {"segments/cart.yaml": manifest})
    assert run(ws, "apply", "--auto-approve")[0] == 0
    assert entry(ws)["source"]["skipped"] == 1
    diffs.clear()
    first = plan_json(ws)
    assert diffs == []
    change = next(c for c in first["changes"] if c["address"] == "cart.files-mics")
    assert change["members"]["skipped"] == 1


def _resigned(state: dict[str, Any]) -> dict[str, Any]:
    """Return the document with its digests made again (as an older segops wrote it)."""
    raw = state["destinations"]["cart.files-mics"]
    raw["digest"] = model._entry_digest("cart.files-mics", raw)
    state["digest"] = model._document_digest(state)
    return state


def test_a_source_read_the_same_way_by_two_destinations_is_read_once(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = """\
    - connection: files-mics-csv
      datamart_id: "1509"
      segment_technical_name: cart
      identifier: {kind: email_hash, column: email_hash, format: sha256}
"""
    source = "csv: {path: ../data/cart.csv}"
    write_tree(workspace, {"segments/cart.yaml": mics_manifest("cart", source, extra=extra)})
    members(workspace, [*HASHES[:20], BAD_ROW])
    reads: list[str] = []
    real = sources.relation_sql

    def counted(source: Any, *args: Any) -> str:
        reads.append(source.path)
        return real(source, *args)

    monkeypatch.setattr(sources, "relation_sql", counted)
    code, _, err = run(workspace, "plan")
    assert code == 1 and "data/cart.csv:22:" in err, err  # the bad line is still named
    reads.clear()
    members(workspace, HASHES[:20])
    got = plan_json(workspace)
    assert reads == ["data/cart.csv"]
    counts = {c["address"]: c["members"]["add"] for c in got["changes"]}
    assert counts == {"cart.files-mics": 20, "cart.files-mics-csv": 20}


def test_a_value_of_64_characters_that_are_not_hex_is_a_skipped_row(workspace: Path) -> None:
    """Hash keys are decoded without `try` first; a non-hex value makes segops decode again."""
    source = "csv: {path: ../data/cart.csv}\n    on_bad_rows: skip"
    write_tree(workspace, {"segments/cart.yaml": mics_manifest("cart", source)})
    members(workspace, [HASHES[0], "g" * 64, HASHES[1], HASHES[1][:63] + "G", "é" * 32])
    change = plan_json(workspace)["changes"][0]
    assert change["members"]["add"] == 2 and change["members"]["skipped"] == 3
