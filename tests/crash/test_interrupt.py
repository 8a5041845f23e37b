"""Ctrl-C with real signals: a child `segops apply` against the emulated platforms.

First SIGINT: the operation in flight finishes, what was confirmed is recorded, the lock is
released, exit 130 with one line; the next apply converges. Second SIGINT: stopped at once,
same guarantees from the journal. At any moment of a plan: exit 130, nothing changed. Never
a traceback.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulators._server import Faults
from tests.crash.harness import ENV, check, converge, platforms
from tests.crash.workspace import Desired


def start(root: Path, *args: str, tmp: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, **ENV, "SEGOPS_PROGRESS_INTERVAL": "0"}
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.Popen(
        [sys.executable, "-m", "segops", "-C", str(root), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_journal(
    root: Path, process: subprocess.Popen[str], status: str, address: str = "trial_mics.mics"
) -> None:
    """Wait until the child journaled an operation of `address` with `status`."""
    journal = root / ".segops" / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "apply ended before it was interrupted"
        lines = journal.read_text().splitlines() if journal.exists() else []
        for line in lines:
            entry = json.loads(line) if line.endswith("}") else {}
            if entry.get("address") == address and entry.get("status") == status:
                return
        time.sleep(0.005)
    raise AssertionError(f"no {status} operation of {address} in the journal")


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def slow_platforms() -> Faults:
    return Faults(latency=0.15)


def desired_with_many_batches(root: Path, mics_url: str, moe_url: str) -> Desired:
    desired = Desired()
    rng = random.Random(11)
    desired.change("create", "create", rng)
    while len(desired.mics) < 30:  # at batch_lines 7, several executions
        desired.change("create", "create", rng)
    desired.write(root, mics_url, moe_url)
    return desired


def test_the_first_ctrl_c_finishes_what_is_in_flight_and_records_it(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    faults = slow_platforms()
    with platforms(faults) as (mics, moe):
        desired = desired_with_many_batches(root, mics.base_url, moe.base_url)
        process = start(root, "apply", "--auto-approve")
        wait_for_journal(root, process, "accepted")
        process.send_signal(signal.SIGINT)
        code, out, err = finish(process)
        assert code == 130, out + err
        assert "Traceback" not in out + err
        assert "Interrupt received: finishing the operation in flight" in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("Interrupted: ") and "stopped part-way" in last, err
        assert last.endswith(f"Run `segops -C {root} apply` to resume."), last
        assert not (root / ".segops" / "lock.json").exists(), "the lock was released"
        state = json.loads((root / ".segops" / "state.json").read_text())
        assert state["serial"] >= 1, "what was confirmed is recorded"
        journal = (root / ".segops" / "journal.jsonl").read_text()
        assert '"status":"intent"' not in journal.splitlines()[-1], "nothing left half-sent"
        faults.latency = 0
        assert converge(root) == 1
        check(root, desired, mics, moe)


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    faults = slow_platforms()
    with platforms(faults) as (mics, moe):
        desired = desired_with_many_batches(root, mics.base_url, moe.base_url)
        process = start(root, "apply", "--auto-approve")
        wait_for_journal(root, process, "accepted")
        process.send_signal(signal.SIGINT)
        time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        code, out, err = finish(process)
        assert code == 130, out + err
        assert "Traceback" not in out + err
        last = err.strip().splitlines()[-1]
        assert last.startswith("Interrupted: ") and "resume" in last, err
        assert "the one under way was stopped at once" in last
        assert "the journal records what was sent" in last
        assert not (root / ".segops" / "lock.json").exists()
        faults.latency = 0
        converge(root)
        check(root, desired, mics, moe)


def test_apply_json_reports_the_interrupt(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    faults = slow_platforms()
    with platforms(faults) as (mics, moe):
        desired_with_many_batches(root, mics.base_url, moe.base_url)
        process = start(root, "apply", "--auto-approve", "--json")
        wait_for_journal(root, process, "accepted")
        process.send_signal(signal.SIGINT)
        code, out, err = finish(process)
    assert code == 130 and "Traceback" not in out + err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-2]["type"] == "interrupt" and events[-2]["hard"] is False
    assert (events[-1]["status"], events[-1]["exit_code"]) == ("interrupted", 130)


def big_workspace(root: Path, rows: int) -> None:
    (root / "segments").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "segops.yaml").write_text(
        'version: 1\nmanifests: ["segments/*.yaml"]\nengine: {threads: 1}\n'
        "connections:\n  f: {platform: files, target: mediarithmics, path: out}\n"
    )
    (root / "segments" / "big.yaml").write_text(
        "apiVersion: segops/v1\nkind: Segment\nmetadata: {name: big}\n"
        "spec:\n  source: {csv: {path: ../data/big.csv}}\n  destinations:\n"
        '    - connection: f\n      datamart_id: "1"\n      segment_technical_name: big\n'
        "      identifier: {kind: user_account_id, column: id}\n"
        '      compartment_id: "1"\n'
    )
    with (root / "data" / "big.csv").open("w") as handle:
        handle.write("id\n")
        handle.writelines(f"user-{n:09d}\n" for n in range(rows))


def plan_interrupted(tmp_path: Path, root: Path, delay: float) -> None:
    """Ctrl-C `plan -out` `delay` seconds after its handlers are installed: nothing changes."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = start(root, "plan", "-out", str(tmp_path / "p.segplan"), tmp=scratch)
    deadline = time.monotonic() + 60
    while not list(scratch.glob("segops-*")) and process.poll() is None:  # handlers installed
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process)
    assert "Traceback" not in out + err and "unexpected error" not in err
    if code == 0:  # it finished first
        return
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "Interrupted: nothing was changed."
    assert not (tmp_path / "p.segplan").exists()
    assert list(scratch.iterdir()) == [], "the scratch folder is removed"
    assert not (root / ".segops").exists()


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8, 1.5])
def test_ctrl_c_while_planning_changes_nothing(tmp_path: Path, delay: float) -> None:
    """Wherever it lands (start-up, reading, the DuckDB diff, writing the plan), one line."""
    root = tmp_path / "ws"
    big_workspace(root, 2_000_000)
    plan_interrupted(tmp_path, root, delay)


def many_small_workspace(root: Path, segments: int) -> None:
    """Small segments on two engine threads: their diffs run side by side in lanes."""
    (root / "segments").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "segops.yaml").write_text(
        'version: 1\nmanifests: ["segments/*.yaml"]\nengine: {threads: 2}\n'
        "connections:\n  f: {platform: files, target: mediarithmics, path: out}\n"
    )
    for i in range(segments):
        (root / "segments" / f"s{i}.yaml").write_text(
            f"apiVersion: segops/v1\nkind: Segment\nmetadata: {{name: s{i}}}\n"
            f"spec:\n  source: {{csv: {{path: ../data/s{i}.csv}}}}\n  destinations:\n"
            f'    - connection: f\n      datamart_id: "1"\n      segment_technical_name: s{i}\n'
            "      identifier: {kind: user_account_id, column: id}\n"
            '      compartment_id: "1"\n'
        )
        rows = "".join(f"user-{i}-{n}\n" for n in range(50))
        (root / "data" / f"s{i}.csv").write_text("id\n" + rows)


@pytest.mark.parametrize("delay", [0.6, 1.2])
def test_ctrl_c_while_lanes_diff_changes_nothing(tmp_path: Path, delay: float) -> None:
    """Ctrl-C while small diffs run side by side: the lanes stop, one line, nothing written."""
    root = tmp_path / "ws"
    many_small_workspace(root, 400)
    plan_interrupted(tmp_path, root, delay)


def test_a_ctrl_c_during_a_held_block_interrupts_when_it_ends() -> None:
    """The engine opens (DuckDB's module, its first connection) whole, then the Ctrl-C."""
    from segops.ui.interrupt import Interrupts

    interrupts = Interrupts(write=lambda _line: None)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.held():
            interrupts._handle(signal.SIGINT, None)  # what Python's handler would call
            done.append("the block went on to its end")
    assert done == ["the block went on to its end"]
    with interrupts.held():  # nothing pending is left over
        pass
    fresh = Interrupts(write=lambda _line: None)  # (a second Ctrl-C would end the process)
    with pytest.raises(KeyboardInterrupt):  # outside the block, at once
        fresh._handle(signal.SIGINT, None)


@pytest.mark.parametrize("sign", [signal.SIGTERM, signal.SIGHUP])
def test_a_termination_during_a_held_block_ends_the_run_when_it_ends(sign: int) -> None:
    from segops.ui.interrupt import Interrupts

    interrupts = Interrupts(write=lambda _line: None)
    done = []
    with pytest.raises(SystemExit) as ended:
        with interrupts.held():
            with interrupts.held():  # nested: held until the outermost block ends
                interrupts._terminate(sign, None)  # what Python's handler would call
                done.append("inner")
            done.append("outer")
    assert ended.value.code == 128 + sign
    assert done == ["inner", "outer"]
    with interrupts.held():  # nothing pending is left over
        pass
    with pytest.raises(SystemExit) as at_once:  # outside a held block, at once
        interrupts._terminate(sign, None)
    assert at_once.value.code == 128 + sign


def test_a_termination_held_back_wins_over_the_error_being_cleaned_up() -> None:
    from segops.ui.interrupt import Interrupts

    interrupts = Interrupts(write=lambda _line: None)
    with pytest.raises(SystemExit) as ended:
        try:
            raise ValueError("the command failed")
        finally:
            with interrupts.held():
                interrupts._terminate(signal.SIGTERM, None)
    assert ended.value.code == 143
    assert isinstance(ended.value.__context__, ValueError)


def test_cleanup_runs_whole_when_the_signal_comes_before_the_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A SIGTERM handled before the hold took effect: `finish` has not started; it runs
    once, held, and the run still ends with the signal's code."""
    from contextlib import contextmanager

    from segops.ui import interrupt

    real = interrupt.signals_held
    entered = []

    @contextmanager
    def first_entry_terminated():  # type: ignore[no-untyped-def]
        entered.append(1)
        if len(entered) == 1:
            raise SystemExit(143)
        with real():
            yield

    monkeypatch.setattr(interrupt, "signals_held", first_entry_terminated)
    ran = []
    with pytest.raises(SystemExit) as ended:
        interrupt.cleanup(lambda: ran.append("removed"))
    assert ended.value.code == 143
    assert ran == ["removed"] and len(entered) == 2


def test_cleanup_does_not_repeat_what_ended_the_run_itself() -> None:
    from segops.ui.interrupt import cleanup

    ran = []

    def finish() -> None:
        ran.append("once")
        raise SystemExit(3)

    with pytest.raises(SystemExit) as ended:
        cleanup(finish)
    assert ended.value.code == 3 and ran == ["once"]


def test_the_first_termination_is_recorded_for_what_a_library_turned_into_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from segops.ui import interrupt

    interrupts = interrupt.Interrupts(write=lambda _line: None)
    monkeypatch.setattr(interrupt, "_current", [interrupts])
    assert interrupt.termination() is None
    with pytest.raises(SystemExit) as ended:
        with interrupts.held():
            interrupts._terminate(signal.SIGHUP, None)
            assert interrupt.termination() == 129  # recorded at once, though held back
            interrupts._terminate(signal.SIGTERM, None)
    assert interrupt.termination() == 129  # the first decides the exit code
    assert ended.value.code == 129
