"""The kill points: armed by SEGOPS_TEST_KILL_AT, the n-th hit kills, nothing else does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from segops.destinations import killpoints

SCRIPT = (
    "import segops.destinations.killpoints as k\nfor p in {points!r}: k.reached(p)\nprint('alive')"
)


def reach(points: list[str], armed: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != killpoints.VARIABLE}
    if armed is not None:
        env[killpoints.VARIABLE] = armed
    code = SCRIPT.format(points=points)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "points,armed,dies",
    [
        (["apply:start"], "apply:start", True),
        (["mics:intent", "mics:intent"], "mics:intent#2", True),
        (["mics:intent"], "mics:intent#2", False),  # the second hit never comes
        (["moe:intent", "mics:intent"], "moe:published", False),
        (["apply:start"], None, False),
    ],
)
def test_the_armed_hit_kills_and_nothing_else(
    points: list[str], armed: str | None, dies: bool
) -> None:
    done = reach(points, armed)
    assert (done.returncode == -signal.SIGKILL) is dies
    assert ("alive" in done.stdout) is not dies


@pytest.mark.parametrize("armed", ["nowhere", "apply:start#x", "apply:start#-1"])
def test_a_bad_setting_stops_at_once_naming_the_variable(armed: str) -> None:
    done = reach(["apply:start"], armed)
    assert (
        done.returncode == 1 and killpoints.VARIABLE in done.stderr and "alive" not in done.stdout
    )


def test_unarmed_points_are_inert() -> None:
    assert not killpoints.armed("apply:start")
    killpoints.reached("apply:start")  # this process lives on
