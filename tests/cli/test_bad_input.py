"""Bad input changes nothing: every command, on a corpus of broken workspaces, exits with an
error, prints no traceback, and leaves the workspace and the temp dir exactly as they were."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SEGOPS_YAML, run, write_tree

H = hashlib.sha256(b"a@example.com").hexdigest()
MICS = """\
apiVersion: segops/v1
kind: Segment
metadata:
  name: cart
spec:
  source:
    csv: {path: ../data/cart.csv}
  destinations:
    - connection: files-mics
      datamart_id: "1509"
      segment_technical_name: cart
      identifier: {kind: email_hash, column: email_hash, format: sha256}
"""
MOE = """\
apiVersion: segops/v1
kind: Segment
metadata:
  name: vip
spec:
  source:
    members: [email: a@example.com]
  destinations:
    - connection: files-moe
      segment: {name: vip}
      attribute: {name: email}
      expiry_days: 30
"""
BASE = {
    "segops.yaml": SEGOPS_YAML,
    "segments/cart.yaml": MICS,
    "segments/vip.yaml": MOE,
    "data/cart.csv": f"email_hash\n{H}\n",
    "plan.zip": "not a plan file\n",  # what `show` is given
}


def edit(file: str, old: str, new: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        path = root / file
        text = path.read_text()
        assert old in text, (file, old)
        path.write_text(text.replace(old, new, 1))

    return change


def replace_with(file: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / file).unlink()
        make(root / file)

    return change


def write(file: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / file).write_bytes(data)


CORPUS: dict[str, Callable[[Path], None]] = {
    "yaml-unclosed-bracket": edit("segments/cart.yaml", "{path: ../data/cart.csv}", "[x,"),
    "yaml-duplicate-key": edit("segments/cart.yaml", "kind: Segment\n", "kind: Segment\nkind: X\n"),
    "not-utf8": write("segments/cart.yaml", MICS.replace("cart\n", "caf\xe9\n").encode("latin-1")),
    "unknown-key": edit("segops.yaml", "version: 1\n", "version: 1\nextra: 1\n"),
    "name-trailing-newline": edit("segments/cart.yaml", "name: cart\n", 'name: "cart\\n"\n'),
    "name-block-scalar": edit("segments/vip.yaml", "name: vip\n", "name: |\n    vip\n"),
    "path-trailing-newline": edit("segops.yaml", "path: out/moe\n", 'path: "out/moe\\n"\n'),
    "duplicate-segment": write("segments/again.yaml", MICS.encode()),
    "shared-platform-segment": write(
        "segments/again.yaml", MICS.replace("name: cart\n", "name: again\n", 1).encode()
    ),
    "unknown-connection": edit("segments/cart.yaml", "files-mics", "files-nope"),
    "source-missing": edit("segments/cart.yaml", "cart.csv", "gone.csv"),
    "source-outside": edit("segments/cart.yaml", "../data/cart.csv", "../../cart.csv"),
    "source-named-pipe": replace_with("data/cart.csv", lambda p: os.mkfifo(p)),
    "manifest-named-pipe": replace_with("segments/vip.yaml", lambda p: os.mkfifo(p)),
    "manifest-only-comments": write("segments/vip.yaml", b"# nothing here yet\n"),
    "memory-limit-huge": edit("segops.yaml", "memory_limit: 512MB", "memory_limit: 99999999TB"),
    "memory-limit-tiny": edit("segops.yaml", "memory_limit: 512MB", "memory_limit: 1MB"),
    "threads-huge": edit("segops.yaml", "threads: 1", "threads: 100000"),
    "safety-nan": edit("segops.yaml", "threads: 1}", "threads: 1}\nsafety: {max_removals: .nan}"),
    "expiry-days-zero": edit("segments/vip.yaml", "expiry_days: 30", "expiry_days: 0"),
    "expiry-days-int32": edit("segments/vip.yaml", "expiry_days: 30", "expiry_days: 2147483648"),
    "expiration-duration-negative": edit(
        "segments/cart.yaml", "sha256}\n", "sha256}\n      expiration_duration: -1\n"
    ),
    "state-outside": edit("segops.yaml", "threads: 1}", "threads: 1}\nstate: {path: ../elsewhere}"),
    "bad-identifier-row": write("data/cart.csv", f"email_hash\n{H}\nnot-a-hash\n".encode()),
    "missing-column": write("data/cart.csv", f"email\n{H}\n".encode()),
    "no-segops-yaml": lambda root: (root / "segops.yaml").unlink(),
}
COMMANDS = [
    ["validate"],
    ["plan"],
    ["plan", "-out", "saved.zip"],
    ["apply", "--auto-approve"],
    ["show", "plan.zip"],
    ["fmt"],
]
# Defects fmt has no reason to see: it formats YAML, it does not validate sources or ranges.
FMT_FINE = {
    "name-trailing-newline",
    "name-block-scalar",
    "duplicate-segment",
    "shared-platform-segment",
    "unknown-connection",
    "source-missing",
    "source-outside",
    "source-named-pipe",
    "memory-limit-huge",
    "memory-limit-tiny",
    "expiry-days-zero",
    "expiry-days-int32",
    "expiration-duration-negative",
    "state-outside",
    "bad-identifier-row",
    "missing-column",
    "manifest-only-comments",
}
# Defects in member rows: only reading every row finds them, which validate does not do.
ROWS = {"bad-identifier-row"}


def snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    """Return every entry under `root` (the parent too): kind, and bytes of regular files."""
    found: dict[str, tuple[str, bytes]] = {}
    for path in sorted(root.parent.rglob("*")):
        mode = path.lstat().st_mode
        name = path.relative_to(root.parent).as_posix()
        if stat.S_ISREG(mode):
            found[name] = ("file", path.read_bytes())
        else:
            found[name] = (oct(stat.S_IFMT(mode)), b"")
    return found


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_the_base_workspace_is_valid_and_formatted(tmp_path: Path, temp_dir: Path) -> None:
    root = tmp_path / "ws" / "root"
    write_tree(root, BASE)
    assert run(root, "validate")[0] == 0
    assert run(root, "fmt", "--check") == (0, "", "")


@pytest.mark.parametrize("defect", sorted(CORPUS))
def test_bad_input_changes_nothing(tmp_path: Path, temp_dir: Path, defect: str) -> None:
    root = tmp_path / "ws" / "root"  # the parent shows anything written beside the workspace
    write_tree(root, BASE)
    CORPUS[defect](root)
    before = snapshot(root)
    for args in COMMANDS:
        code, out, err = run(root, *args)
        where = f"{defect}: segops {' '.join(args)}"
        if (args == ["fmt"] and defect in FMT_FINE) or (args == ["validate"] and defect in ROWS):
            assert code == 0 and "Error" not in err, where
        else:
            assert code == 1, f"{where} exited {code}: {out}{err}"
            assert err.startswith(("Error: ", "Usage error: ")), f"{where}: {err}"
        assert "Traceback" not in out + err and "unexpected error" not in err, f"{where}: {err}"
        assert snapshot(root) == before, f"{where} changed the workspace"
        assert list(temp_dir.iterdir()) == [], f"{where} left files in the temp dir"


def test_the_exemptions_name_defects_of_the_corpus() -> None:
    """A misspelt exemption would exempt nothing and hide an expected failure."""
    assert FMT_FINE | ROWS <= set(CORPUS)


@pytest.mark.parametrize("state", [".segops", "var/state", "a/b/c/state"])
def test_a_failed_apply_leaves_no_state_folder_wherever_state_goes(
    tmp_path: Path, temp_dir: Path, state: str
) -> None:
    root = tmp_path / "ws" / "root"
    write_tree(root, {**BASE, "segops.yaml": SEGOPS_YAML + f"state: {{path: {state}}}\n"})
    (root / "var").mkdir()  # an existing folder on the way stays
    CORPUS["bad-identifier-row"](root)
    before = snapshot(root)
    assert run(root, "apply", "--auto-approve")[0] == 1
    assert snapshot(root) == before


def test_a_failed_apply_after_a_good_one_keeps_the_state(tmp_path: Path, temp_dir: Path) -> None:
    root = tmp_path / "ws" / "root"
    write_tree(root, BASE)
    assert run(root, "apply", "--auto-approve")[0] == 0
    CORPUS["bad-identifier-row"](root)
    before = snapshot(root)
    assert run(root, "apply", "--auto-approve")[0] == 1
    assert snapshot(root) == before
    assert (root / ".segops" / "state.json").is_file()
