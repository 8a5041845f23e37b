"""Kill -9 `segops apply` with its state on S3; every rerun starts from an empty working copy.

Like a CI runner that dies mid-apply and a new job on another machine that checks out the
repository (no .segops/): the next apply must find the lock, the journal and the quota
ledgers on S3, and converge exactly on both emulated platforms. The kill moments are seeded.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulators.mediarithmics import MediarithmicsEmulator
from emulators.moengage import MoEngageEmulator
from tests.s3server import S3Server, s3_server
from tests.s3state import aws_env, s3_state, segops, with_state

BUCKET, PREFIX = "segops-kills", "ci/prod"
KILLS = 20
MICS_TOKEN, MOE_WORKSPACE, MOE_KEY = "CANARY-mics-7a1e", "CANARYWS02", "CANARY-moe-3f9b"
ENV = {"K_MICS_TOKEN": MICS_TOKEN, "K_MOE_WS": MOE_WORKSPACE, "K_MOE_KEY": MOE_KEY}
UNIVERSE = [f"user{i:03d}@example.com" for i in range(60)]

SEGOPS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 256MB, threads: 1}}
safety: {{max_removal_fraction: 1.0, allow_empty_source: true}}
connections:
  mics:
    platform: mediarithmics
    base_url: {mics}
    token_env: K_MICS_TOKEN
    batch_lines: 10
    poll_interval: 0.02
    max_attempts: 10
  moe:
    platform: moengage
    base_url: {moe}
    workspace_id_env: K_MOE_WS
    api_key_env: K_MOE_KEY
    publish: {{http: {{host: 127.0.0.1}}}}
    callback: {{listen: "127.0.0.1:0", wait: 20}}
    quota: {{ops_per_hour: 100000, ops_per_day: 100000, users_per_day: 100000000}}
    max_attempts: 10
"""
SEGMENTS = {
    "mics.yaml": """\
apiVersion: segops/v1
kind: Segment
metadata: {name: kill_mics}
spec:
  source:
    csv: {path: ../data/mics.csv}
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: kill_mics
      identifier: {kind: email_hash, column: email_hash, format: sha256}
      expiration_duration: 0
""",
    "moe.yaml": """\
apiVersion: segops/v1
kind: Segment
metadata: {name: kill_moe}
spec:
  source:
    csv: {path: ../data/moe.csv}
  destinations:
    - connection: moe
      segment: {name: kill_moe}
      attribute: {name: email, type: string}
""",
}


@dataclass
class Runner:
    """The repository (workspace files only) and the jobs that check it out, one per run."""

    repo: Path
    jobs: Path
    env: dict[str, str]
    client: Any  # boto3 S3 client of the test server
    count: int = 0
    hold: float = 0.5  # how long an apply holds the lock here, as last measured

    def checkout(self) -> Path:
        self.count += 1
        job = self.jobs / f"job{self.count:03d}"
        shutil.copytree(self.repo, job)
        return job

    def segops(self, *args: str) -> tuple[int, str]:
        """Run segops in this process (where the emulators run) from a fresh checkout."""
        job = self.checkout()
        try:
            code, out, err = segops(job, *args, env=self.env)
        finally:
            shutil.rmtree(job)  # the runner dies: nothing of it is left for the next job
        return code, out + err

    def apply(self, kill: random.Random | None = None) -> tuple[int | None, str]:
        """Run apply in a child process from a fresh checkout; with `kill`, SIGKILL it at a
        random moment while it holds the lock (placed by how long applies hold it here).

        Returns its exit code (None when killed) and its output. A child process keeps
        segops apart from the emulators' threads, as on a real runner.
        """
        job = self.checkout()
        command = [sys.executable, "-m", "segops", "-C", str(job), "apply", "--auto-approve"]
        child = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        locked_at = deadline = None
        while child.poll() is None:
            now = time.monotonic()
            if locked_at is None and self.lock_id() is not None:
                locked_at = now
                if kill is not None:
                    deadline = now + kill.uniform(0, self.hold)
            if deadline is not None and now >= deadline:
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.025)  # each look is a request to the S3 server, in this process
        code, out = child.wait(), (child.stdout.read() if child.stdout else "")
        if child.stdout:
            child.stdout.close()
        if kill is None and locked_at is not None:
            self.hold = time.monotonic() - locked_at
        shutil.rmtree(job)
        return (None if code == -signal.SIGKILL else code), out

    def lock_id(self) -> str | None:
        try:
            got = self.client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/lock.json")
        except self.client.exceptions.NoSuchKey:
            return None
        return str(json.loads(got["Body"].read())["id"])


@pytest.fixture
def server() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


def email_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def set_desired(repo: Path, rng: random.Random) -> tuple[set[str], set[str]]:
    mics = {email_hash(e) for e in rng.sample(UNIVERSE, rng.randint(0, 30))}
    moe = set(rng.sample(UNIVERSE, rng.randint(1, 30)))
    (repo / "data" / "mics.csv").write_text(
        "email_hash\n" + "".join(f"{h}\n" for h in sorted(mics))
    )
    (repo / "data" / "moe.csv").write_text("email\n" + "".join(f"{e}\n" for e in sorted(moe)))
    return mics, moe


def test_sigkilled_applies_on_s3_converge_from_empty_working_copies(
    tmp_path: Path, server: S3Server
) -> None:
    rng = random.Random(909)
    env = {**aws_env(tmp_path), **ENV}
    mics = MediarithmicsEmulator(MICS_TOKEN)
    moe = MoEngageEmulator(
        MOE_WORKSPACE, MOE_KEY, known_users=set(UNIVERSE), limits=(100_000, 100_000, 10**9)
    )
    with mics, moe:
        repo = tmp_path / "repo"
        (repo / "segments").mkdir(parents=True)
        (repo / "data").mkdir()
        config = SEGOPS_YAML.format(mics=mics.base_url, moe=moe.base_url)
        state = s3_state(BUCKET, PREFIX, server.endpoint_url)
        (repo / "segops.yaml").write_text(with_state(config, state))
        for name, text in SEGMENTS.items():
            (repo / "segments" / name).write_text(text)
        runner = Runner(repo, tmp_path / "jobs", env, server.client())
        runner.jobs.mkdir()

        def converge(want: tuple[set[str], set[str]]) -> None:
            for _ in range(3):
                code, output = runner.apply()
                if code == 0:
                    break
            assert code == 0, f"apply did not converge:\n{output}"
            members = mics.members("1509").get(("segment_technical_name", "kill_mics"), set())
            got_mics = {m[1] for m in members}
            assert got_mics == want[0], f"mediarithmics: {len(got_mics ^ want[0])} members differ"
            got_moe = moe.segments().get("kill_moe", set())
            assert got_moe == want[1], f"moengage: {len(got_moe ^ want[1])} members differ"
            code, output = runner.segops("plan", "--detailed-exitcode")
            assert code == 0, f"plan after convergence exited {code}:\n{output}"

        converge(set_desired(repo, rng))
        kills = unlocked = trials = 0
        while kills < KILLS and trials < KILLS + 6:  # a run may end before its kill moment
            trials += 1
            want = set_desired(repo, rng)
            kills += runner.apply(kill=rng)[0] is None
            lock = runner.lock_id()
            if lock is not None:  # the killed run held it: release it as a person would
                code, output = runner.segops("force-unlock", lock)
                assert code == 0, output
                unlocked += 1
            converge(want)
        assert kills == KILLS, f"only {kills} of {trials} applies were killed while running"
        assert unlocked >= KILLS // 2, f"only {unlocked} kills landed while apply held the lock"
    kept = {o["Key"] for o in server.client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    # the records apply keeps went to S3 with the state, never to a working copy
    assert {f"{PREFIX}/journal.jsonl", f"{PREFIX}/moengage-ledger-moe.json"} <= kept
