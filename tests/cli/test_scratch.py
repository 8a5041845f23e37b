"""Scratch folders and partial files never outlive a run: removed at exit, on SIGTERM, and
(for runs killed outright) by the next run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from segops.planning.planfile import read_plan
from tests.conftest import mics_manifest, run, write_tree


def big_workspace(workspace: Path, members: int = 60_000) -> Path:
    rows = "".join(hashlib.sha256(str(i).encode()).hexdigest() + "\n" for i in range(members))
    write_tree(
        workspace,
        {
            "segments/cart.yaml": mics_manifest("cart", "csv: {path: ../data/m.csv}"),
            "data/m.csv": "email_hash\n" + rows,
        },
    )
    return workspace


def test_scratch_folders_of_dead_runs_are_removed(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    dead = temp / "segops-999999999-abcd_123"
    (dead / "deltas").mkdir(parents=True)
    (dead / "deltas" / "x.parquet").write_bytes(b"identifiers")
    (dead / "link").symlink_to(tmp_path)  # removed as a link, never followed
    alive = temp / f"segops-{os.getpid()}-zzzz1234"
    alive.mkdir()
    unrelated = [temp / "segops-publish-abc", temp / "segops-abc", temp / "other"]
    for path in unrelated:
        path.mkdir()
    big_workspace(workspace, 3)
    assert run(workspace, "validate")[0] == 0
    assert not dead.exists()
    assert alive.exists() and all(p.exists() for p in unrelated)
    assert tmp_path.exists() and (tmp_path / "tmp").exists()
    # And this run's own scratch folder is gone once it ends.
    assert sorted(p.name for p in temp.iterdir()) == sorted(
        [alive.name, *(p.name for p in unrelated)]
    )


def _start(root: Path, temp: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TMPDIR": str(temp)}
    return subprocess.Popen(
        [sys.executable, "-m", "segops", "-C", str(root), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _terminate_once_busy(child: subprocess.Popen[bytes], temp: Path, sign: int) -> int:
    """Send `sign` once the child's scratch folder exists (or it ended); return its exit code."""
    prefix = f"segops-{child.pid}-"
    while child.poll() is None and not any(p.name.startswith(prefix) for p in temp.iterdir()):
        time.sleep(0.002)
    if child.poll() is None:
        child.send_signal(sign)
    _, err = child.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    return child.returncode


def _loaded(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text(errors="replace")
    except OSError:  # the process has ended
        return False


@pytest.mark.parametrize("sign", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminated_plan_leaves_no_scratch_and_no_partial_plan(
    workspace: Path, tmp_path: Path, sign: int
) -> None:
    root = big_workspace(workspace)
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "plans"
    out.mkdir()
    child = _start(root, temp, "plan", "-out", str(out / "p.segplan"))
    code = _terminate_once_busy(child, temp, sign)
    assert code in (0, 128 + sign)
    assert list(temp.iterdir()) == []
    left = [p.name for p in out.iterdir()]
    assert left in ([], ["p.segplan"])
    if left:  # it finished before the signal: then the plan is whole
        assert read_plan(out / "p.segplan").plan.changes


def test_a_termination_while_a_query_runs_ends_the_plan_with_its_code(
    workspace: Path, tmp_path: Path
) -> None:
    """DuckDB sees the SIGTERM inside its query and ends it with its own RuntimeError: the
    run still exits 143, with no crash report, nothing left behind."""
    root = big_workspace(workspace, 600_000)
    temp = tmp_path / "tmp"
    temp.mkdir()
    child = _start(root, temp, "plan", "-out", str(tmp_path / "p.segplan"))
    # once DuckDB's library is loaded, the diff's query starts (a second or so of work)
    while child.poll() is None and not _loaded(child.pid, "duckdb"):
        time.sleep(0.005)
    time.sleep(0.2)
    code = _terminate_once_busy(child, temp, signal.SIGTERM)
    assert code in (0, 143)
    assert list(temp.iterdir()) == []  # no scratch folder, no crash report


def test_a_terminated_apply_releases_its_lock_and_scratch(workspace: Path, tmp_path: Path) -> None:
    root = big_workspace(workspace)
    temp = tmp_path / "tmp"
    temp.mkdir()
    child = _start(root, temp, "apply", "--auto-approve")
    code = _terminate_once_busy(child, temp, signal.SIGTERM)
    assert code in (0, 143)
    assert list(temp.iterdir()) == []
    assert not (root / ".segops" / "lock.json").exists()
    code, _, err = run(root, "apply", "--auto-approve")  # and the next run converges
    assert code == 0, err
    assert run(root, "plan", "--detailed-exitcode")[0] == 0


def test_a_termination_while_the_scratch_folder_is_removed_does_not_cut_its_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run had ended (an error, or its work done) and was removing its scratch folder
    when CI's SIGTERM came: the folder is removed whole, then the run exits 143."""
    import shutil

    from segops import cli
    from segops.ui import interrupt

    interrupts = interrupt.Interrupts(write=lambda _line: None)
    monkeypatch.setattr(interrupt, "_current", [interrupts])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real_rmtree = shutil.rmtree
    cut = []

    def rmtree_terminated(path: Path, *args: object, **kwargs: object) -> None:
        interrupts._terminate(signal.SIGTERM, None)  # arrives while the removal runs
        cut.append(path)
        real_rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "rmtree", rmtree_terminated)
    with pytest.raises(SystemExit) as ended:
        with cli._scratch() as work:
            (work / "deltas").mkdir()
            (work / "deltas" / "d.parquet").write_bytes(b"identifiers")
            folder = work
            raise ValueError("the plan failed")
    assert ended.value.code == 143
    assert cut == [folder] and not folder.exists()
    assert list(tmp_path.iterdir()) == []
