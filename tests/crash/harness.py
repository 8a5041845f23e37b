"""Kill `segops apply` at named points and timed moments; the next apply must converge exactly.

Each trial changes the desired state with one action per platform (tests/crash/workspace.py:
add/remove, update of data_bag and expiration_ts, refresh of expiration_duration, recreate,
MoEngage replace, destroy, create), starts `segops apply --auto-approve` in a child process
and kills it in one of two ways:

- at a named point (`SEGOPS_TEST_KILL_AT`, segops/destinations/killpoints.py): segops
  SIGKILLs itself the n-th time it reaches the point, so every phase after the lock is hit
  on purpose: mid-request, between the platform's answer and the journal, between confirm
  and the state write, after the state write;
- at a timed moment: once the child holds the state lock, after a seeded random part of the
  time a whole apply holds it; where it landed is read from the journal afterwards.

Then it releases the lock, runs apply again to the end, checks that the emulated platforms
hold exactly the desired members (with their attributes) and that a new plan is clean.
`Stats.report()` gives the distribution of kill points. Used by tests/crash/test_kill_apply.py
and scripts/kill_trials.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner

from emulators._server import Faults
from emulators.mediarithmics import MediarithmicsEmulator
from emulators.moengage import MoEngageEmulator
from segops.cli import app
from segops.destinations.killpoints import POINTS, VARIABLE
from tests.crash.workspace import MICS_ACTIONS, MOE_ACTIONS, UNIVERSE, Desired

MICS_TOKEN = "CANARY-mics-token-5b0c"
MOE_WORKSPACE, MOE_KEY = "CANARYWS01", "CANARY-moe-key-9d2e"
ENV = {"TRIAL_MICS_TOKEN": MICS_TOKEN, "TRIAL_MOE_WS": MOE_WORKSPACE, "TRIAL_MOE_KEY": MOE_KEY}
# A point's hits in one apply: one per batch (mediarithmics), per file (MoEngage: 1 or 2), per
# destination (apply:*).
MAX_HIT = {"apply:start": 1, "apply:confirmed": 2, "apply:state-written": 2}


@dataclass
class Stats:
    trials: int = 0
    killed: Counter[str] = field(default_factory=Counter)  # where kills landed
    not_reached: Counter[str] = field(default_factory=Counter)  # armed, apply ended first
    actions: Counter[str] = field(default_factory=Counter)  # platform:action of killed trials
    pairs: set[tuple[str, str]] = field(default_factory=set)  # (platform:action, point) killed
    recoveries_needed: int = 0  # applies beyond one needed to converge

    @property
    def kills(self) -> int:
        return sum(self.killed.values())

    def report(self) -> str:
        """Return the distribution of kill points, for people."""
        lines = [
            f"{self.trials} trials, {self.kills} killed mid-apply (all after the state lock), "
            f"{sum(self.not_reached.values())} ended before their kill point, "
            f"{self.recoveries_needed} extra recovery runs",
            "kill point                          kills   share",
        ]
        for point, n in sorted(self.killed.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {point:<32} {n:>6}  {n / max(1, self.kills):6.1%}")
        if self.not_reached:
            missed = ", ".join(f"{p} {n}" for p, n in sorted(self.not_reached.items()))
            lines.append(f"not reached: {missed}")
        lines.append(
            "actions killed: " + ", ".join(f"{a} {n}" for a, n in sorted(self.actions.items()))
        )
        return "\n".join(lines)


@contextmanager
def platforms(
    faults: Faults | None = None,
) -> Iterator[tuple[MediarithmicsEmulator, MoEngageEmulator]]:
    mics = MediarithmicsEmulator(MICS_TOKEN, faults=faults)
    moe = MoEngageEmulator(
        MOE_WORKSPACE,
        MOE_KEY,
        faults=faults,
        known_users=set(UNIVERSE),
        limits=(100_000, 100_000, 10**9),
    )
    with mics, moe:
        yield mics, moe


def segops(root: Path, *args: str) -> tuple[int, str]:
    """Run segops in this process (the emulators run here too); return (exit code, output)."""
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=ENV)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def child(root: Path, kill_at: str | None = None) -> subprocess.Popen[bytes]:
    """Start `segops apply --auto-approve` in a child process, armed to die at `kill_at`."""
    env = {**os.environ, **ENV}
    env.pop(VARIABLE, None)
    if kill_at:
        env[VARIABLE] = kill_at
    return subprocess.Popen(
        [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_at_point(root: Path, point: str, hit: int) -> bool:
    """Run apply armed at the `hit`-th arrival at `point`; return True when it died there."""
    process = child(root, f"{point}#{hit}")
    return process.wait(timeout=120) == -signal.SIGKILL


def wait_for_lock(root: Path, process: subprocess.Popen[bytes]) -> float | None:
    """Return when the child took the state lock (monotonic), None when it ended first."""
    lock = root / ".segops" / "lock.json"
    while process.poll() is None:
        if lock.exists():
            return time.monotonic()
        time.sleep(0.002)
    return None


def locked_span(root: Path) -> float:
    """Return how long an apply that sends nothing holds the lock here (at least 0.3 s)."""
    process = child(root)
    taken = wait_for_lock(root, process)
    process.wait(timeout=120)
    return max(0.3, time.monotonic() - taken) if taken else 0.3


def kill_timed(root: Path, fraction: float, span: float) -> str | None:
    """Kill apply `fraction` of `span` seconds after it took the lock; return where it landed."""
    journal = root / ".segops" / "journal.jsonl"
    before = len(journal.read_text().splitlines()) if journal.exists() else 0
    process = child(root)
    if wait_for_lock(root, process) is None:
        return None
    try:
        process.wait(timeout=fraction * span)
        return None
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
    lines = journal.read_text().splitlines()[before:] if journal.exists() else []
    last = json.loads(lines[-1]) if lines and lines[-1].endswith("}") else {}
    return (
        f"timed: after journal {last.get('status', 'resource')}"
        if lines
        else "timed: locked, nothing journaled"
    )


def release_lock(root: Path) -> None:
    lock = root / ".segops" / "lock.json"
    if lock.exists():
        lock_id = json.loads(lock.read_text())["id"]
        code, output = segops(root, "force-unlock", lock_id)
        assert code == 0, output


def converge(root: Path, attempts: int = 3) -> int:
    """Run apply until it succeeds; return how many runs it took."""
    output = ""
    for run in range(1, attempts + 1):
        code, output = segops(root, "apply", "--auto-approve")
        if code == 0:
            return run
    raise AssertionError(f"apply did not converge in {attempts} runs:\n{output}")


def check(root: Path, desired: Desired, mics: MediarithmicsEmulator, moe: MoEngageEmulator) -> None:
    desired.check(mics, moe)
    code, output = segops(root, "plan", "--detailed-exitcode")
    assert code == 0, f"plan after convergence exited {code}:\n{output}"


def run_trials(
    root: Path,
    trials: int,
    seed: int,
    faults: Faults | None = None,
    timed: int = 0,
    points: Sequence[str] = POINTS,
    engine: Mapping[str, object] | None = None,
) -> Stats:
    """Run `trials` kills at named points (each of `points` in turn), then `timed` timed kills.

    `engine`: segops.yaml engine keys (the Spark engine's, say); DuckDB's by default.
    """
    rng = random.Random(seed)
    stats = Stats()
    with platforms(faults) as (mics, moe):
        desired = Desired(engine=dict(engine or {}))
        desired.change("create", "create", rng)
        desired.write(root, mics.base_url, moe.base_url)
        converge(root)
        check(root, desired, mics, moe)
        span = locked_span(root) if timed else 0.0
        for i in range(trials + timed):
            mics_action, moe_action = MICS_ACTIONS[i % 6], MOE_ACTIONS[i % 5]
            desired.change(mics_action, moe_action, rng)
            desired.write(root, mics.base_url, moe.base_url)
            if i < trials:
                point = points[i % len(points)]
                most = MAX_HIT.get(point, 2 if point.startswith("moe:") else 3)
                hit = 1 if i < len(points) else rng.randint(1, most)
                landed = point if kill_at_point(root, point, hit) else None
                if landed is None:
                    stats.not_reached[f"{point}#{hit}"] += 1
            else:
                landed = kill_timed(root, rng.random(), span * 4)  # the span sends nothing
            if landed is not None:
                stats.killed[landed] += 1
                for action in (f"mics:{mics_action}", f"moe:{moe_action}"):
                    stats.actions[action] += 1
                    stats.pairs.add((action, landed))
            release_lock(root)
            stats.recoveries_needed += converge(root) - 1
            check(root, desired, mics, moe)
            stats.trials += 1
    return stats
