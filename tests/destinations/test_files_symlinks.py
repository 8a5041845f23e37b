"""The files destination never writes through a symlink planted below its output folder."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import mics_manifest, run, write_tree

HASHES = [hashlib.sha256(f"u{i}".encode()).hexdigest() for i in range(3)]
RUN = "out/mics/run-000001"
NDJSON = f"{RUN}/mediarithmics/datamart-1509/cart.files-mics.ndjson"


@pytest.fixture
def cart(workspace: Path) -> Path:
    write_tree(
        workspace,
        {
            "segments/cart.yaml": mics_manifest("cart", "csv: {path: ../data/m.csv}"),
            "data/m.csv": "email_hash\n" + "".join(f"{h}\n" for h in HASHES),
        },
    )
    return workspace


@pytest.mark.parametrize(
    "link",
    [RUN, f"{RUN}/mediarithmics", f"{RUN}/mediarithmics/datamart-1509"],
    ids=["run", "platform", "datamart"],
)
def test_a_symlinked_folder_below_the_output_is_refused(
    cart: Path, tmp_path: Path, link: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (cart / link).parent.mkdir(parents=True, exist_ok=True)
    (cart / link).symlink_to(outside, target_is_directory=True)
    code, _, err = run(cart, "apply", "--auto-approve")
    assert code == 1
    assert "symlink inside the output folder" in err
    assert list(outside.rglob("*")) == []
    assert not (cart / ".segops" / "state.json").exists()


def test_a_symlinked_file_is_replaced_not_followed(cart: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (cart / NDJSON).parent.mkdir(parents=True)
    (cart / NDJSON).symlink_to(victim)
    code, _, err = run(cart, "apply", "--auto-approve")
    assert code == 0, err
    assert victim.read_text() == "keep me"
    assert not (cart / NDJSON).is_symlink()
    assert len((cart / NDJSON).read_text().splitlines()) == 3


def test_the_output_folder_itself_may_be_a_symlink(cart: Path) -> None:
    """It is configuration (segops.yaml `path`, checked to stay in the workspace)."""
    disk = cart / "big-disk"
    disk.mkdir()
    (cart / "out").mkdir()
    (cart / "out" / "mics").symlink_to(disk, target_is_directory=True)
    code, _, err = run(cart, "apply", "--auto-approve")
    assert code == 0, err
    assert (disk / "run-000001").is_dir()


def test_output_files_and_new_folders_are_private(cart: Path) -> None:
    old = os.umask(0)
    try:
        assert run(cart, "apply", "--auto-approve")[0] == 0
    finally:
        os.umask(old)
    for path in (cart / RUN).rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
