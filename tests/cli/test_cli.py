"""The command line, through typer's test runner, on small workspaces in tmp_path."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from segops.state.local import LocalStateStore
from tests.conftest import run, write_tree

REPO = Path(__file__).resolve().parents[2]


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


A, B, C = h("a@example.com"), h("b@example.com"), h("c@example.com")

MANIFEST = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: cart}
spec:
  source:
    csv: {path: ../data/m.csv}
  destinations:
    - connection: files-mics
      datamart_id: "1509"
      segment_technical_name: cart
      identifier: {kind: email_hash, column: email_hash, format: sha256}
"""


@pytest.fixture
def cart(workspace: Path) -> Path:
    write_tree(workspace, {"segments/cart.yaml": MANIFEST, "data/m.csv": f"email_hash\n{A}\n{B}\n"})
    return workspace


def state_serial(root: Path) -> int | None:
    state = LocalStateStore(root / ".segops").read()
    return None if state is None else state.serial


def test_bundled_workspace_full_loop(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(REPO / "manifests", root)
    assert run(root, "validate")[0] == 0
    code, out, _ = run(root, "plan", "--detailed-exitcode")
    assert code == 2 and "to create" in out
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    assert "Apply complete!" in out
    code, out, _ = run(root, "plan", "--detailed-exitcode")
    assert code == 0
    assert out.startswith("No changes.")


def test_plan_exit_codes(cart: Path) -> None:
    assert run(cart, "plan")[0] == 0
    assert run(cart, "plan", "--detailed-exitcode")[0] == 2
    assert run(cart, "apply", "--auto-approve")[0] == 0
    assert run(cart, "plan", "--detailed-exitcode")[0] == 0


def test_usage_error_exits_1_not_2(cart: Path) -> None:
    code, _, _ = run(cart, "plan", "--no-such-option")
    assert code == 1


def test_apply_off_a_terminal_needs_auto_approve(cart: Path) -> None:
    code, _, err = run(cart, "apply")
    assert code == 1
    assert "--auto-approve" in err
    assert state_serial(cart) is None
    assert not (cart / "out").exists()
    assert not (cart / ".segops" / "lock.json").exists()


def test_same_inputs_same_plan_bytes(cart: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "1.segplan", tmp_path / "2.segplan"
    assert run(cart, "plan", "-out", str(first))[0] == 0
    assert run(cart, "plan", "-out", str(second))[0] == 0
    assert first.read_bytes() == second.read_bytes()
    assert run(cart, "plan", "--format", "json")[1] == run(cart, "plan", "--format", "json")[1]


def test_saved_plan_applies_and_show_reads_it(cart: Path, tmp_path: Path) -> None:
    saved = tmp_path / "p.segplan"
    run(cart, "plan", "-out", str(saved))
    code, out, _ = run(cart, "show", str(saved))
    assert code == 0 and "+2" in out
    shown = json.loads(run(cart, "show", str(saved), "--format", "json")[1])
    assert shown["changes"][0]["members"]["add"] == 2
    assert run(cart, "apply", str(saved))[0] == 0
    assert state_serial(cart) == 1


def test_stale_plan_refused_when_state_moved(cart: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "1.segplan", tmp_path / "2.segplan"
    run(cart, "plan", "-out", str(one))
    run(cart, "plan", "-out", str(two))
    assert run(cart, "apply", str(one))[0] == 0
    code, _, err = run(cart, "apply", str(two))
    assert code == 1
    assert "stale" in err and "lineage" in err
    assert state_serial(cart) == 1


@pytest.mark.parametrize("changed", ["segments/cart.yaml", "segops.yaml"])
def test_stale_plan_refused_when_a_definition_changed(
    cart: Path, tmp_path: Path, changed: str
) -> None:
    saved = tmp_path / "p.segplan"
    run(cart, "plan", "-out", str(saved))
    with (cart / changed).open("a") as handle:
        handle.write("# edited\n")
    code, _, err = run(cart, "apply", str(saved))
    assert code == 1
    assert "a definition changed" in err and f"{changed} changed" in err
    assert state_serial(cart) is None
    assert not (cart / "out").exists()


def test_tampered_plan_file_is_refused(cart: Path, tmp_path: Path) -> None:
    saved, bad = tmp_path / "p.segplan", tmp_path / "bad.segplan"
    run(cart, "plan", "-out", str(saved))
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data + b"x" if item.filename.startswith("deltas/") else data)
    code, _, err = run(cart, "apply", str(bad))
    assert code == 1 and "does not match its digest" in err
    assert state_serial(cart) is None


def test_not_a_plan_file(cart: Path) -> None:
    (cart / "junk").write_text("hello")
    code, _, err = run(cart, "show", str(cart / "junk"))
    assert code == 1 and "not a segops plan file" in err


def test_lock_blocks_apply_until_force_unlock(cart: Path) -> None:
    held = LocalStateStore(cart / ".segops").lock("apply")
    code, _, err = run(cart, "apply", "--auto-approve")
    assert code == 1
    assert held.id in err and "force-unlock" in err
    assert run(cart, "force-unlock", "wrong-id")[0] == 1
    # The holder is this very process, alive on this machine: only --force releases it.
    code, _, err = run(cart, "force-unlock", held.id)
    assert code == 1 and "still running" in err
    assert run(cart, "force-unlock", held.id, "--force")[0] == 0
    assert run(cart, "apply", "--auto-approve")[0] == 0


def test_bad_row_names_file_and_line_and_changes_nothing(cart: Path) -> None:
    (cart / "data/m.csv").write_text(f"email_hash\n{A}\n{B.upper()}\n\n{C}\nnot hex\n")
    code, out, err = run(cart, "plan")
    assert code == 1
    assert "data/m.csv:3: email_hash in column 'email_hash' is not 64 lowercase hex" in err
    assert "data/m.csv:6:" in err
    assert B.upper() not in err and "not hex" not in err  # identifiers are personal data
    assert run(cart, "apply", "--auto-approve")[0] == 1
    assert state_serial(cart) is None and not (cart / "out").exists()


def test_skip_bad_rows_counts_them(cart: Path) -> None:
    (cart / "segments/cart.yaml").write_text(
        MANIFEST.replace(
            "    csv: {path: ../data/m.csv}",
            "    csv: {path: ../data/m.csv}\n    on_bad_rows: skip",
        )
    )
    (cart / "data/m.csv").write_text(f"email_hash\n{A}\nnope\n{B}\n")
    plan = json.loads(run(cart, "plan", "--format", "json")[1])
    assert plan["changes"][0]["members"] == {
        "before": 0,
        "after": 2,
        "add": 2,
        "remove": 0,
        "update": 0,
        "skipped": 1,
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"email_hash\n{A}\n{B},extra\n".encode(), "data/m.csv:3: has 2 fields"),
        (b"email_hash\n" + A.encode() + b"\n\xe9t\xe9\n", "data/m.csv:3: is not UTF-8"),
    ],
    ids=["ragged", "latin-1"],
)
def test_unreadable_csv_names_the_line(cart: Path, content: bytes, expected: str) -> None:
    (cart / "data/m.csv").write_bytes(content)
    code, _, err = run(cart, "plan")
    assert code == 1
    assert expected in err
    assert "Original Line" not in err


def test_bom_and_crlf_are_accepted(cart: Path) -> None:
    (cart / "data/m.csv").write_bytes(b"\xef\xbb\xbfemail_hash\r\n" + A.encode() + b"\r\n")
    plan = json.loads(run(cart, "plan", "--format", "json")[1])
    assert plan["changes"][0]["members"]["add"] == 1


def test_missing_column_is_a_validation_error(cart: Path) -> None:
    (cart / "data/m.csv").write_text(f"email\n{A}\n")
    code, _, err = run(cart, "validate")
    assert code == 1
    assert "segments/cart.yaml:" in err and "identifier column 'email_hash'" in err


def test_destroy_needs_the_connection(cart: Path) -> None:
    run(cart, "apply", "--auto-approve")
    (cart / "segments/cart.yaml").unlink()
    write_tree(
        cart,
        {
            "segments/other.yaml": MANIFEST.replace("name: cart", "name: other").replace(
                "technical_name: cart", "technical_name: other"
            )
        },
    )
    text = (cart / "segops.yaml").read_text().replace("files-mics:", "renamed:", 1)
    (cart / "segops.yaml").write_text(text.replace("connection: files-mics", "connection: renamed"))
    (cart / "segments/other.yaml").write_text(
        (cart / "segments/other.yaml").read_text().replace("files-mics", "renamed")
    )
    code, _, err = run(cart, "plan")
    assert code == 1 and "restore the connection" in err


def test_a_failed_destination_keeps_its_old_state(cart: Path) -> None:
    # segops.yaml's folder is checked up front (a file there is a validation error); the
    # run folder inside it is made only by apply
    (cart / "out/mics").mkdir(parents=True)
    (cart / "out/mics/run-000001").write_text("a file where the run folder should be")
    code, _, err = run(cart, "apply", "--auto-approve")
    assert code == 1
    assert "cart.files-mics: FAILED" in err
    assert not (cart / ".segops" / "state.json").exists()
    assert state_serial(cart) == 0  # the first apply began (its lineage kept), wrote nothing


def test_no_identifier_in_plan_output(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(REPO / "manifests", root)
    outputs = run(root, "plan")[1] + run(root, "plan", "--format", "json")[1]
    for data in (root / "data").glob("*.csv"):
        for line in data.read_text().splitlines()[1:]:
            for value in line.split(","):
                if len(value) >= 8:
                    assert value not in outputs
