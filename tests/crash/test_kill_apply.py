"""Kill -9 `segops apply` at every named point and at timed moments; the next apply converges.

`make kill-trials` (scripts/kill_trials.py) runs the same harness thousands of times.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from emulators._server import Faults
from segops.destinations.killpoints import POINTS
from tests.crash.harness import (
    check,
    converge,
    kill_at_point,
    platforms,
    release_lock,
    run_trials,
)
from tests.crash.workspace import MICS_ACTIONS, MOE_ACTIONS, Desired


def test_kills_at_every_point_and_every_action_converge(tmp_path: Path) -> None:
    stats = run_trials(tmp_path, trials=2 * len(POINTS), seed=2026, timed=4)
    print(stats.report())
    assert stats.trials == 2 * len(POINTS) + 4
    # the first pass arms each point at its first hit: every one must have been killed
    assert set(POINTS) <= set(stats.killed), stats.report()
    # every action was killed while its platform was sending
    for platform, actions in (("mics", MICS_ACTIONS), ("moe", MOE_ACTIONS)):
        for action in actions:
            sending = {p for a, p in stats.pairs if a == f"{platform}:{action}"}
            assert any(p.startswith((f"{platform}:", "http:")) for p in sending), (
                f"{platform}:{action} never killed mid-send\n{stats.report()}"
            )


def test_kills_under_injected_faults_converge(tmp_path: Path) -> None:
    faults = Faults(error_rate=0.1, throttle_every=7, retry_after=1, seed=5)
    stats = run_trials(tmp_path, trials=6, seed=77, faults=faults, timed=2)
    print(stats.report())
    assert stats.trials == 8
    assert stats.kills >= 5


def test_kills_with_the_spark_engine_converge(
    tmp_path: Path, spark_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Apply on the Spark engine, killed where its diff and snapshot merge matter (mid-send,
    after a confirmation, after a state write), converges."""
    from segops.engine import spark

    fallbacks: list[str] = []  # the recovering applies run here: Spark must do their work
    monkeypatch.setattr(spark.log, "warning", lambda text, *args: fallbacks.append(text % args))
    points = ("moe:published", "apply:confirmed", "apply:state-written")
    engine = {"kind": "spark", "remote": spark_remote}
    stats = run_trials(tmp_path, trials=len(points), seed=13, points=points, engine=engine)
    print(stats.report())
    assert stats.trials == len(points)
    assert set(points) <= set(stats.killed), stats.report()
    assert fallbacks == []


def test_kills_while_snapshots_are_written_beside_the_next_send_converge(tmp_path: Path) -> None:
    """On two engine threads, a small change's snapshot is merged and stored on a lane while
    the next destination sends (segops.apply.loop): kills there converge too."""
    points = ("apply:confirmed", "apply:state-written", "mics:confirmed", "moe:accepted")
    stats = run_trials(
        tmp_path, trials=2 * len(points), seed=31, points=points, engine={"threads": 2}
    )
    print(stats.report())
    assert stats.trials == 2 * len(points)
    assert set(points) <= set(stats.killed), stats.report()


@pytest.mark.parametrize(
    "platform,first,second",
    [
        ("moe", "recreate", "replace"),
        ("moe", "recreate", "recreate"),
        ("mics", "recreate", "recreate"),
    ],
)
def test_a_kill_after_a_state_write_does_not_vouch_for_the_next_change(
    tmp_path: Path, platform: str, first: str, second: str
) -> None:
    """A recreate keeps the members, so the next change has the same snapshot and delta.

    Found by the kill trials: the journal entries a kill left between the state write and
    the journal's cleanup made the next change look sent already.
    """
    rng = random.Random(5)
    desired = Desired()
    with platforms() as (mics, moe):

        def step(action: str) -> None:
            desired.change(
                action if platform == "mics" else "keep",
                action if platform == "moe" else "keep",
                rng,
            )
            desired.write(tmp_path, mics.base_url, moe.base_url)

        desired.change("create", "create", rng)
        desired.write(tmp_path, mics.base_url, moe.base_url)
        converge(tmp_path)
        step(first)
        assert kill_at_point(tmp_path, "apply:state-written", 1)
        release_lock(tmp_path)
        converge(tmp_path)
        check(tmp_path, desired, mics, moe)
        step(second)
        converge(tmp_path)
        check(tmp_path, desired, mics, moe)
