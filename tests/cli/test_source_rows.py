"""Valid input is read whole and quickly; invisible characters are refused by line; an empty
source never creates an empty destination unless the manifest allows it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.cli.sources import clean, manifest, sent, write_workspace
from tests.conftest import run

CSV = "csv: {path: ../data/m.csv}"


def _csv(root: Path, content: bytes, extra: str = "", spec: str = "") -> Path:
    return write_workspace(root, manifest(CSV, extra=extra, spec=spec), {"data/m.csv": content})


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
def test_mixed_lf_and_crlf_are_read_like_lf(workspace: Path, seed: int, bom: bytes) -> None:
    rng = random.Random(seed)
    rows = [f'crm-{i},"{{""n"": {i}}}"' for i in range(rng.randint(2, 40))]
    endings = [rng.choice([b"\n", b"\r\n"]) for _ in rows]
    endings[rng.randrange(len(endings))] = b"\r\n"  # at least one of each
    endings[rng.randrange(len(endings))] = b"\n"
    body = b"".join(r.encode() + e for r, e in zip(rows, endings, strict=True))
    root = _csv(workspace, bom + b"id,bag\r\n" + body, extra="      data_bag: {column: bag}\n")
    code, _, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    assert sent(root) == sorted(f"crm-{i}" for i in range(len(rows)))
    assert sent(root, "data_bag") == sorted(f'{{"n":{i}}}' for i in range(len(rows)))


def test_mixed_line_endings_do_not_hide_a_broken_line(workspace: Path) -> None:
    root = _csv(workspace, b'id\r\ncrm-1\ncrm-2\r\n"crm-3\ncrm-4\n')
    code, _, err = run(root, "plan")
    assert code == 1 and "data/m.csv:4: a quoted value that starts on this line" in err


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\u200d", "ZERO WIDTH JOINER"),
        ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
        ("\u2060", "WORD JOINER"),
        ("\u00ad", "SOFT HYPHEN"),
        ("\u034f", "COMBINING GRAPHEME JOINER"),
        ("\u200b", "ZERO WIDTH SPACE"),
        ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
        ("\u0378", "unassigned"),
        ("\ue000", "private-use"),
        ("\x00", "control character"),
        ("\x7f", "control character"),
    ],
)
def test_invisible_characters_are_refused_by_line(workspace: Path, char: str, name: str) -> None:
    rows = ["crm-1", f"crm{char}2", "crm-3", f"{char}crm-4"]
    root = _csv(workspace, ("id\n" + "\n".join(rows) + "\n").encode())
    code, _, err = run(root, "plan")
    assert code == 1
    assert "data/m.csv:3: user_account_id in column 'id' must hold only" in err
    assert "data/m.csv:5:" in err and "data/m.csv:2:" not in err and "data/m.csv:4:" not in err
    assert f"U+{ord(char):04X}" in err and name in err
    assert clean(err, "crm"), err


# -- validate reads every inline row ---------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ("[{id: crm-1}, {id: crm 2}]", "must hold only"),
        ("[{id: crm-1}, {id: 7}]", "is a whole number, not text"),
        ("[{id: crm-1}, {other: x}]", "empty user_account_id"),
        ("[{id: crm-1, bag: '[1]'}]", "data_bag in column 'bag' is not a JSON object"),
        ("[{id: crm-1, bag: {a: 1}}, {id: crm-1, bag: {a: 2}}]", "appears more than once"),
    ],
)
def test_validate_checks_every_inline_row(workspace: Path, members: str, words: str) -> None:
    extra = "      data_bag: {column: bag}\n" if "bag" in members else ""
    root = write_workspace(workspace, manifest(f"members: {members}", extra=extra))
    code, _, err = run(root, "validate")
    assert code == 1 and words in err and "segments/s.yaml:" in err
    assert clean(err, "crm"), err


def test_validate_lets_skipped_inline_rows_pass(workspace: Path) -> None:
    source = "members: [{id: crm-1}, {id: crm 2}]\n    on_bad_rows: skip"
    root = write_workspace(workspace, manifest(source))
    assert run(root, "validate")[0] == 0


def test_a_large_inline_source_is_checked_and_planned_whole(workspace: Path) -> None:
    count = 40_000
    members = "\n".join(f"      - {{id: crm-{i}}}" for i in range(count))
    members = members.replace("{id: crm-39990}", "{id: crm 39990}")
    root = write_workspace(workspace, manifest("members:\n" + members))
    code, _, err = run(root, "validate")
    assert code == 1
    assert f"segments/s.yaml:{7 + 39990}: user_account_id in column 'id'" in err  # 1st on 7
    path = root / "segments/s.yaml"
    path.write_text(path.read_text().replace("{id: crm 39990}", "{id: crm-39990}"))
    code, out, err = run(root, "plan", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["changes"][0]["members"]["add"] == count


# -- empty sources ---------------------------------------------------------------------------


EMPTY = {
    "csv-header-only": ("csv: {path: ../data/m.csv}", "data/m.csv", b"id\n"),
    "csv-header-crlf": ("csv: {path: ../data/m.csv}", "data/m.csv", b"id\r\n"),
    "ndjson-empty-file": ("ndjson: {path: ../data/m.ndjson}", "data/m.ndjson", b""),
    "ndjson-blank-lines": ("ndjson: {path: ../data/m.ndjson}", "data/m.ndjson", b"\n \n"),
    "inline-empty": ("members: []", "", b""),
}


@pytest.mark.parametrize("case", EMPTY.values(), ids=EMPTY.keys())
def test_an_empty_source_does_not_create_an_empty_destination(
    workspace: Path, case: tuple[str, str, bytes]
) -> None:
    source, name, content = case
    root = write_workspace(workspace, manifest(source), {name: content} if name else {})
    code, out, _ = run(root, "plan")
    assert code == 3
    assert "empty-source" in out or "source is empty" in out
    code, _, err = run(root, "apply", "--auto-approve")
    assert code == 3 and "source is empty" in err
    assert not (root / "out").exists() and not list((root / ".segops").rglob("state.json"))


def test_an_empty_parquet_source_is_stopped_too(workspace: Path) -> None:
    import duckdb

    root = write_workspace(workspace, manifest("parquet: {path: ../data/m.parquet}"))
    (root / "data").mkdir()
    target = root / "data/m.parquet"
    duckdb.execute(f"COPY (SELECT 'x' AS id WHERE false) TO '{target}' (FORMAT parquet)")
    code, out, _ = run(root, "plan", "--format", "json")
    assert code == 3
    (change,) = json.loads(out)["changes"]
    assert [g["guard"] for g in change["guards"]] == ["empty-source"]


def test_a_source_whose_rows_are_all_skipped_is_empty(workspace: Path) -> None:
    source = CSV + "\n    on_bad_rows: skip"
    root = write_workspace(
        workspace, manifest(source), {"data/m.csv": b"id\ncrm 1\n\xe2\x80\x8d\n"}
    )
    code, out, _ = run(root, "plan")
    assert code == 3 and "2 bad rows were skipped" in out


def test_the_manifest_may_allow_an_empty_destination(workspace: Path) -> None:
    spec = "  safety: {allow_empty_source: true}\n"
    root = _csv(workspace, b"id\n", spec=spec)
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    assert run(root, "plan", "--detailed-exitcode")[0] == 0  # created, with no members


def test_a_growing_source_of_a_destination_created_empty_is_no_create(workspace: Path) -> None:
    root = _csv(workspace, b"id\n", spec="  safety: {allow_empty_source: true}\n")
    assert run(root, "apply", "--auto-approve")[0] == 0
    (root / "segments/s.yaml").write_text(manifest(CSV))  # the allowance is gone
    (root / "data/m.csv").write_bytes(b"id\n")
    assert run(root, "plan")[0] == 0  # still empty, nothing to create: no guard
    (root / "data/m.csv").write_bytes(b"id\ncrm-1\n")
    assert run(root, "apply", "--auto-approve")[0] == 0
    assert sent(root) == ["crm-1"]


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_blank_lines_at_the_end_of_a_csv_are_not_rows(workspace: Path, ending: str) -> None:
    data = ending.join(["id", "crm-1", "crm-2", "", "", ""]).encode()
    root = write_workspace(workspace, manifest(CSV), {"data/m.csv": data})
    code, out, err = run(root, "plan", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["changes"][0]["members"]["add"] == 2


def test_a_blank_line_between_rows_is_still_named(workspace: Path) -> None:
    root = write_workspace(workspace, manifest(CSV), {"data/m.csv": b"id\ncrm-1\n\ncrm-2\n\n"})
    code, _, err = run(root, "plan")
    assert code == 1
    assert "data/m.csv:3:" in err and "data/m.csv:5" not in err
