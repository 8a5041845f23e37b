"""Kill -9 `segops apply` at seeded random moments; the next apply must converge exactly.

`make kill-trials` (scripts/kill_trials.py) runs the same harness thousands of times.
"""

from __future__ import annotations

from pathlib import Path

from emulators._server import Faults
from tests.crash.harness import run_trials


def test_fifty_kills_then_apply_converges(tmp_path: Path) -> None:
    stats = run_trials(tmp_path, trials=50, seed=2026)
    assert stats.trials == 50
    # The kills must land while apply works, or the test proves nothing.
    assert stats.killed_before_end >= 35


def test_kills_under_injected_faults_converge(tmp_path: Path) -> None:
    faults = Faults(error_rate=0.1, throttle_every=7, retry_after=1, seed=5)
    stats = run_trials(tmp_path, trials=8, seed=77, faults=faults)
    assert stats.trials == 8
    assert stats.killed_before_end >= 4
