"""A data refresh between plan and apply: definitions are reviewed, data refreshes.

`apply FILE` diffs again the segments whose source data moved since the plan was made,
applies behind the safety guards and says how the counts moved; a moved definition, or
with `--data-changed=refuse` moved data, refuses the plan and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from segops.state.local import LocalStateStore
from tests.conftest import mics_manifest, run, write_tree


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = [h(f"user{i}@example.com") for i in range(40)]


def members(root: Path, name: str, hashes: list[str]) -> None:
    write_tree(root, {f"data/{name}.csv": "email_hash\n" + "".join(f"{x}\n" for x in hashes)})


def applied_members(root: Path) -> dict[str, int]:
    state = LocalStateStore(root / ".segops").read()
    assert state is not None
    return {d.address: d.snapshot.count for d in state.destinations}


def fingerprint(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def ws(workspace: Path) -> Path:
    """cart and vip with 20 members each, applied; then cart gains 2 (the reviewed change)."""
    for name in ("cart", "vip"):
        source = f"csv: {{path: ../data/{name}.csv}}"
        write_tree(workspace, {f"segments/{name}.yaml": mics_manifest(name, source)})
        members(workspace, name, HASHES[:20])
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    members(workspace, "cart", HASHES[:22])
    return workspace


def plan(root: Path, tmp_path: Path, *args: str, code: int = 0) -> Path:
    saved = tmp_path / "p.segplan"
    got, _, err = run(root, "plan", "-out", str(saved), *args)
    assert got == code, err
    return saved


def test_data_grew_after_review_is_applied_with_the_new_counts(ws: Path, tmp_path: Path) -> None:
    saved = plan(ws, tmp_path)
    members(ws, "cart", HASHES[:25])  # the nightly export: 3 more than reviewed
    code, out, err = run(ws, "apply", str(saved))
    assert code == 0, err
    assert "cart.files-mics: data changed since review: +5 ~0 -0 (reviewed +2 ~0 -0)" in out
    assert "cart.files-mics: done (+5 ~0 -0 sent" in out
    assert "vip" not in out.split("Apply complete!")[0].replace("vip.files-mics: done", "")
    assert applied_members(ws) == {"cart.files-mics": 25, "vip.files-mics": 20}
    assert run(ws, "plan", "--detailed-exitcode")[0] == 0


def test_data_shrank_within_the_guards_is_applied(ws: Path, tmp_path: Path) -> None:
    saved = plan(ws, tmp_path)
    members(ws, "cart", HASHES[3:21])  # 18 of 20 kept: 3 removed (15%), 1 added
    code, out, err = run(ws, "apply", str(saved))
    assert code == 0, err
    assert "cart.files-mics: data changed since review: +1 ~0 -3 (reviewed +2 ~0 -0)" in out
    assert applied_members(ws)["cart.files-mics"] == 18


def test_data_shrank_past_a_guard_is_refused_with_the_new_counts(ws: Path, tmp_path: Path) -> None:
    saved = plan(ws, tmp_path)
    members(ws, "cart", HASHES[10:20])  # half of cart gone: more than the 25% allowed
    before = fingerprint(ws)
    code, out, err = run(ws, "apply", str(saved))
    assert code == 3, err
    assert "cart.files-mics: data changed since review: +0 ~0 -10 (reviewed +2 ~0 -0)" in out
    assert "10 of 20 members (50%) would be removed, more than the 25% allowed" in err
    assert "Traceback" not in err
    assert fingerprint(ws) == before  # nothing sent, no state written, no lock left


def test_an_override_covers_only_the_removals_that_were_reviewed(ws: Path, tmp_path: Path) -> None:
    members(ws, "cart", HASHES[10:20])  # reviewed: 10 of 20 removed, the guard trips
    saved = plan(ws, tmp_path, code=3)
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    members(ws, "cart", HASHES[12:20])  # then 12 would go: more than was reviewed
    before = fingerprint(ws)
    code, _, err = run(ws, "apply", str(saved), "--allow-removals", f"cart@{digest[:12]}")
    assert code == 3, err
    assert "covers only the removals that were reviewed" in err
    assert "the current data removes 12 members, the reviewed plan 10" in err
    assert fingerprint(ws) == before
    members(ws, "cart", HASHES[8:20])  # 8 would go: reviewed and overridden covers it
    code, out, err = run(ws, "apply", str(saved), "--allow-removals", f"cart@{digest[:12]}")
    assert code == 0, err
    assert "data changed since review: +0 ~0 -8 (reviewed +0 ~0 -10)" in out
    assert applied_members(ws)["cart.files-mics"] == 12


def test_an_override_whose_guard_no_longer_trips_is_not_an_error(ws: Path, tmp_path: Path) -> None:
    members(ws, "cart", HASHES[10:20])
    saved = plan(ws, tmp_path, code=3)
    members(ws, "cart", HASHES[:20])  # the export is whole again: nothing to remove
    code, out, err = run(ws, "apply", str(saved), "--allow-removals", "cart")
    assert code == 0, err
    assert "data changed since review: +0 ~0 -0 (reviewed +0 ~0 -10)" in out
    assert applied_members(ws)["cart.files-mics"] == 20


@pytest.mark.parametrize("edit", ["segops.yaml", "segments/cart.yaml"])
def test_a_definition_changed_after_review_is_refused(ws: Path, tmp_path: Path, edit: str) -> None:
    saved = plan(ws, tmp_path)
    members(ws, "cart", HASHES[:25])  # data moved too: the definition decides
    with (ws / edit).open("a") as handle:
        handle.write("# edited after review\n")
    before = fingerprint(ws)
    code, out, err = run(ws, "apply", str(saved))
    assert code == 1, err
    stale = "stale: it no longer matches the state or the workspace (a definition changed)"
    assert f"{stale}\n  - {edit} changed" in err
    assert "data changed since review" not in out
    assert fingerprint(ws) == before


def test_only_the_planned_segments_inputs_count(ws: Path, tmp_path: Path) -> None:
    saved = plan(ws, tmp_path, "--segment", "cart")
    shown = json.loads(run(ws, "show", str(saved), "--format", "json")[1])
    assert [f["path"] for f in shown["inputs"]["definitions"]] == [
        "segments/cart.yaml",
        "segops.yaml",
    ]
    assert [(p["segment"], p["source"]) for p in shown["inputs"]["data"]] == [
        ("cart", "data/cart.csv")
    ]
    members(ws, "vip", HASHES[5:30])  # another segment's data and manifest move
    (ws / "segments/vip.yaml").write_text(
        mics_manifest("vip", "csv: {path: ../data/vip.csv}", extra="# edited\n")
    )
    code, out, err = run(ws, "apply", str(saved))
    assert code == 0, err
    assert "data changed since review" not in out
    assert "cart.files-mics: done (+2 ~0 -0 sent" in out and "vip.files-mics" not in out
    assert applied_members(ws) == {"cart.files-mics": 22, "vip.files-mics": 20}


def test_segops_yaml_counts_for_a_selected_plan_too(ws: Path, tmp_path: Path) -> None:
    saved = plan(ws, tmp_path, "--segment", "cart")
    with (ws / "segops.yaml").open("a") as handle:
        handle.write("# edited\n")
    code, _, err = run(ws, "apply", str(saved))
    assert code == 1 and "segops.yaml changed" in err


def test_data_changed_refuse_keeps_the_strict_check(ws: Path, tmp_path: Path) -> None:
    saved = plan(ws, tmp_path)
    members(ws, "cart", HASHES[:25])
    before = fingerprint(ws)
    code, out, err = run(ws, "apply", str(saved), "--data-changed", "refuse")
    assert code == 1, err
    assert "(its data changed, and --data-changed=refuse)" in err
    assert "data/cart.csv changed (data of segment cart)" in err
    assert "done" not in out
    assert fingerprint(ws) == before
    members(ws, "cart", HASHES[:22])  # back to the reviewed bytes: the plan applies as is
    code, out, err = run(ws, "apply", str(saved), "--data-changed=refuse")
    assert code == 0, err
    assert "cart.files-mics: done (+2 ~0 -0 sent" in out


def test_data_changed_needs_a_saved_plan(ws: Path) -> None:
    code, _, err = run(ws, "apply", "--auto-approve", "--data-changed", "apply")
    assert code == 1 and "--data-changed goes with a saved plan" in err


def test_a_plan_of_the_previous_format_is_refused_plainly(ws: Path, tmp_path: Path) -> None:
    saved = plan(ws, tmp_path)
    with zipfile.ZipFile(saved) as archive:
        found = {i.filename: archive.read(i) for i in archive.infolist()}
    data = json.loads(found["plan.json"])
    data["format_version"] = 1
    data["inputs"] = [*data["inputs"]["definitions"]]  # the version 1 layout
    found["plan.json"] = json.dumps(data).encode()
    old = tmp_path / "old.segplan"
    with zipfile.ZipFile(old, "w") as archive:
        for name, content in found.items():
            archive.writestr(name, content)
    for command in ("show", "apply"):
        code, _, err = run(ws, command, str(old))
        assert code == 1
        assert "plan format_version 1 was written by an older segops" in err
        assert "make the plan again with this segops" in err


def test_a_manifest_added_that_the_selection_picks_is_a_definition_change(
    ws: Path, tmp_path: Path
) -> None:
    saved = plan(ws, tmp_path, "--segment", "c*")
    write_tree(ws, {"segments/cart2.yaml": mics_manifest("cart2", "csv: {path: ../data/cart.csv}")})
    code, _, err = run(ws, "apply", str(saved))
    assert code == 1, err
    assert "(a definition changed)\n  - segments/cart2.yaml was added" in err
