"""Kill `segops apply` at seeded random moments and check that the next apply converges.

Each trial picks a new desired membership (a seeded random subset of a fixed universe),
starts `segops apply --auto-approve` in a child process, SIGKILLs it after a seeded random
delay, releases the lock it left, runs apply again to the end, and checks that both
emulated platforms hold exactly the desired members and that the state plans clean.

Used by tests/crash/test_kill_apply.py (50 trials) and scripts/kill_trials.py (thousands).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner

from emulators._server import Faults
from emulators.mediarithmics import MediarithmicsEmulator
from emulators.moengage import MoEngageEmulator
from segops.cli import app

REPO = Path(__file__).resolve().parents[2]
MICS_TOKEN = "CANARY-mics-token-5b0c"
MOE_WORKSPACE, MOE_KEY = "CANARYWS01", "CANARY-moe-key-9d2e"
ENV = {"TRIAL_MICS_TOKEN": MICS_TOKEN, "TRIAL_MOE_WS": MOE_WORKSPACE, "TRIAL_MOE_KEY": MOE_KEY}
UNIVERSE = [f"user{i:03d}@example.com" for i in range(80)]


def email_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


SEGOPS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 256MB, threads: 1}}
safety: {{max_removal_fraction: 1.0, allow_empty_source: true}}  # trials remove freely
connections:
  mics:
    platform: mediarithmics
    base_url: {mics}
    token_env: TRIAL_MICS_TOKEN
    batch_lines: 7
    poll_interval: 0.02
    max_attempts: 10
  moe:
    platform: moengage
    base_url: {moe}
    workspace_id_env: TRIAL_MOE_WS
    api_key_env: TRIAL_MOE_KEY
    publish: {{http: {{host: 127.0.0.1}}}}
    callback: {{listen: "127.0.0.1:0", wait: 20}}
    quota: {{ops_per_hour: 100000, ops_per_day: 100000, users_per_day: 100000000}}
    max_attempts: 10
"""

MICS_SEGMENT = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: trial_mics}
spec:
  source:
    csv: {path: ../data/mics.csv}
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: trial_mics
      identifier: {kind: email_hash, column: email_hash, format: sha256}
      expiration_duration: 0
"""

MOE_SEGMENT = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: trial_moe}
spec:
  source:
    csv: {path: ../data/moe.csv}
  destinations:
    - connection: moe
      segment: {name: trial_moe}
      attribute: {name: email, type: string}
"""


@dataclass
class Stats:
    trials: int = 0
    killed_before_end: int = 0
    recoveries_needed: int = 0
    faults: dict[str, float] = field(default_factory=dict)


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


def write_workspace(root: Path, mics: MediarithmicsEmulator, moe: MoEngageEmulator) -> None:
    (root / "segments").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "segops.yaml").write_text(SEGOPS_YAML.format(mics=mics.base_url, moe=moe.base_url))
    (root / "segments" / "mics.yaml").write_text(MICS_SEGMENT)
    (root / "segments" / "moe.yaml").write_text(MOE_SEGMENT)


def set_desired(root: Path, rng: random.Random) -> tuple[set[str], set[str]]:
    """Write new source files; return the desired (email hashes, emails)."""
    mics = set(rng.sample(UNIVERSE, rng.randint(0, 40)))
    moe = set(rng.sample(UNIVERSE, rng.randint(1, 40)))
    hashes = sorted(email_hash(e) for e in mics)
    (root / "data" / "mics.csv").write_text("email_hash\n" + "".join(f"{h}\n" for h in hashes))
    (root / "data" / "moe.csv").write_text("email\n" + "".join(f"{e}\n" for e in sorted(moe)))
    return set(hashes), moe


def segops(root: Path, *args: str) -> tuple[int, str]:
    """Run segops in this process (the emulators run here too); return (exit code, output)."""
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=ENV)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def kill_after(root: Path, delay: float) -> bool:
    """Start apply, SIGKILL it after `delay` s; return True when it was still running."""
    env = {**os.environ, **ENV}
    child = subprocess.Popen(
        [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        child.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
        return True


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


def check(
    root: Path, mics: MediarithmicsEmulator, moe: MoEngageEmulator, want: tuple[set[str], set[str]]
) -> None:
    got_mics = {
        m[1] for m in mics.members("1509").get(("segment_technical_name", "trial_mics"), set())
    }
    got_moe = moe.segments().get("trial_moe", set())
    assert got_mics == want[0], f"mediarithmics: {len(got_mics ^ want[0])} members differ"
    assert got_moe == want[1], f"moengage: {len(got_moe ^ want[1])} members differ"
    code, output = segops(root, "plan", "--detailed-exitcode")
    assert code == 0, f"plan after convergence exited {code}:\n{output}"


def run_trials(root: Path, trials: int, seed: int, faults: Faults | None = None) -> Stats:
    rng = random.Random(seed)
    stats = Stats()
    with platforms(faults) as (mics, moe):
        write_workspace(root, mics, moe)
        want = set_desired(root, rng)
        start = time.monotonic()
        converge(root)
        span = max(0.5, time.monotonic() - start)  # how long a full apply takes here
        check(root, mics, moe, want)
        for _ in range(trials):
            want = set_desired(root, rng)
            stats.killed_before_end += kill_after(root, rng.uniform(0.05, span * 1.2))
            release_lock(root)
            stats.recoveries_needed += converge(root) - 1
            check(root, mics, moe, want)
            stats.trials += 1
    return stats
