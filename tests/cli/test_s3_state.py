"""The S3 state through the CLI, against a real S3-compatible server: the CI workflow where
every command runs from a fresh, empty working copy; two applies at once; bad settings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from emulators._server import Faults
from emulators.mediarithmics import MediarithmicsEmulator
from emulators.s3 import check_credentials
from tests.s3server import REGION, S3Server, s3_server
from tests.s3state import (
    ACCESS_KEY,
    SECRET_KEY,
    aws_env,
    bundled_copy,
    fresh_copy,
    objects,
    s3_state,
    segops,
    set_aws_env,
    with_state,
)

BUCKET = "segops-ci"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def prefix() -> str:
    return f"team/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def state(server: S3Server, prefix: str) -> str:
    return s3_state(BUCKET, prefix, server.endpoint_url)


def test_plan_apply_plan_each_from_a_fresh_working_copy(
    tmp_path: Path, server: S3Server, prefix: str, state: str
) -> None:
    """The CI workflow: plan on a PR, apply the plan file on merge, plan again; each job on a
    runner that starts empty (the workspace files only, no .segops/)."""
    plan_file = tmp_path / "reviewed.segplan"
    outputs: list[str] = []
    repo = bundled_copy(tmp_path / "repo", state)  # what each job checks out

    def job(n: int, *args: str, code: int = 0) -> str:
        root = fresh_copy(repo, tmp_path / f"job{n}")
        got, out, err = segops(root, *args)
        assert got == code, f"job {n}: segops {' '.join(args)} exited {got}:\n{out}{err}"
        assert not (root / ".segops").exists(), "the state went to S3, not the working copy"
        outputs.append(out + err)
        return out

    job(1, "plan", "-out", str(plan_file), "--detailed-exitcode", code=2)
    assert objects(server, BUCKET, prefix) == {}  # plan writes nothing
    assert "Apply complete!" in job(2, "apply", str(plan_file))
    stored = objects(server, BUCKET, prefix)
    first = json.loads(stored["state.json"])
    assert first["serial"] >= 1 and "lock.json" not in stored
    assert {n.split("/")[0] for n in stored} >= {"state.json", "snapshots"}
    assert "No changes" in job(3, "plan", "--detailed-exitcode")

    csv = repo / "data" / "cart_abandoners.csv"  # a data refresh, applied by a scheduled job
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-1]))
    assert "Members: +0 to add, ~0 to update, -2 to remove." in job(4, "apply", "--auto-approve")
    assert "No changes" in job(5, "plan", "--detailed-exitcode")
    last = json.loads(objects(server, BUCKET, prefix)["state.json"])
    assert last["lineage"] == first["lineage"] and last["serial"] > first["serial"]
    everything = "".join(outputs) + "".join(
        data.decode("utf-8", "replace") for data in objects(server, BUCKET, prefix).values()
    )
    assert SECRET_KEY not in everything and ACCESS_KEY not in everything


class _Gate(Faults):
    """Holds every request to the platform until `open` is set (with a bound, so a failing
    test cannot hang)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.entered = threading.Event()  # a request is held at the gate

    def pick(self) -> tuple[int, dict[str, str]] | None:
        self.entered.set()
        self.open.wait(60)
        return None


@contextmanager
def _applying(roots: list[Path], env: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Start `segops apply --auto-approve` on each workspace at once; reap them all at exit."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root in roots
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


MICS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 256MB, threads: 1}}
connections:
  mics:
    platform: mediarithmics
    base_url: {url}
    token_env: MICS_TOKEN
    poll_interval: 0.02
"""
MICS_SEGMENT = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: racers}
spec:
  source:
    csv: {path: ../data/racers.csv}
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: racers
      identifier: {kind: email_hash, column: email_hash, format: sha256}
      expiration_duration: 0
"""


def test_two_applies_at_once_exactly_one_runs(
    tmp_path: Path, server: S3Server, prefix: str, state: str
) -> None:
    """Two runners apply the same change against one S3 state at the same moment: one takes
    the lock and applies; the other stops at once, naming the holder, and sends nothing."""
    gate = _Gate()
    hashes = sorted(f"{n:064x}" for n in range(1, 13))
    env = {**aws_env(tmp_path), "MICS_TOKEN": "CANARY-token"}
    with MediarithmicsEmulator("CANARY-token", faults=gate) as mics:
        config = with_state(MICS_YAML.format(url=mics.base_url), state)
        roots = [_racers_workspace(tmp_path / f"runner{n}", config, hashes) for n in (1, 2)]
        with _applying(roots, env) as procs:
            try:
                # The winner holds the lock, stuck at the gate; the loser must end on its own.
                done = _first_to_end(procs)
                loser, winner = procs[done], procs[1 - done]
                out, err = loser.communicate()
                assert winner.poll() is None, "the winner was still applying"
            finally:
                gate.open.set()
            winner_out, winner_err = winner.communicate(timeout=120)
        applied = mics.members("1509")[("segment_technical_name", "racers")]
    assert loser.returncode == 1, out + err
    assert "the state is locked by another segops run" in err
    assert f"PID:       {winner.pid}" in err and " force-unlock " in err
    assert winner.returncode == 0, winner_out + winner_err
    assert sorted(m[1] for m in applied) == hashes
    assert json.loads(objects(server, BUCKET, prefix)["state.json"])["serial"] == 1


FILES_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
engine: {memory_limit: 256MB, threads: 1}
connections:
  mics:
    platform: files
    target: mediarithmics
    path: out/mics
"""


def _racers_workspace(root: Path, config: str, hashes: list[str]) -> Path:
    (root / "segments").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "segops.yaml").write_text(config)
    (root / "segments" / "racers.yaml").write_text(MICS_SEGMENT)
    (root / "data" / "racers.csv").write_text("email_hash\n" + "\n".join(hashes) + "\n")
    return root


def test_an_apply_whose_lock_was_taken_over_overwrites_nothing(
    tmp_path: Path, server: S3Server, prefix: str, state: str
) -> None:
    """A holds the lock, stuck on the platform; someone force-unlocks it and B applies. When
    A goes on, its next write to the journal or the state fails: nothing of B's is lost."""
    gate = _Gate()
    hashes = sorted(f"{n:064x}" for n in range(1, 9))
    client = server.client()
    env = {**aws_env(tmp_path), "MICS_TOKEN": "CANARY-token"}
    with MediarithmicsEmulator("CANARY-token", faults=gate) as mics:
        config = with_state(MICS_YAML.format(url=mics.base_url), state)
        a = _racers_workspace(tmp_path / "a", config, hashes)
        with _applying([a], env) as (runner_a,):
            try:
                lock = _wait_for_lock(client, prefix, runner_a)
                assert gate.entered.wait(60), "A never reached the platform"
                b = _racers_workspace(tmp_path / "b", with_state(FILES_YAML, state), hashes[:3])
                unlocked = segops(b, "force-unlock", lock, "--force")
                applied = segops(b, "apply", "--auto-approve")
                written = objects(server, BUCKET, prefix)["state.json"]
            finally:
                gate.open.set()
            out, err = runner_a.communicate(timeout=120)
    assert unlocked[0] == 0 and applied[0] == 0, (unlocked, applied)
    assert runner_a.returncode == 1, out + err
    assert "changed since this run read it: another segops run wrote it" in err, err
    assert "Traceback" not in err
    assert objects(server, BUCKET, prefix)["state.json"] == written  # B's state, untouched
    assert json.loads(written)["destinations"]["racers.mics"]["member_count"] == 3


def _wait_for_lock(client: object, prefix: str, proc: subprocess.Popen[str]) -> str:
    for _ in range(2400):
        try:
            got = client.get_object(Bucket=BUCKET, Key=f"{prefix}/lock.json")  # type: ignore[attr-defined]
        except client.exceptions.NoSuchKey:  # type: ignore[attr-defined]
            assert proc.poll() is None, proc.communicate()
            threading.Event().wait(0.025)
            continue
        return str(json.loads(got["Body"].read())["id"])
    raise AssertionError("apply never took the lock")


def _first_to_end(procs: list[subprocess.Popen[str]]) -> int:
    for _ in range(1200):
        for n, proc in enumerate(procs):
            try:
                proc.wait(timeout=0.05)
                return n
            except subprocess.TimeoutExpired:
                pass
    raise AssertionError("neither apply ended while the platform held every request")


# -- bad settings: a clear error naming segops.yaml `state.*`, exit 1, nothing written ----------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again on exit: nothing listens there


COMMANDS = [
    ["plan"],
    ["apply", "--auto-approve"],
    ["force-unlock", "5f0c1c9e-4d1e-4c86-9d0e-2b4f6f3d1a77"],
    ["state", "recover"],
]
DEFECTS = {
    "unreachable": "segops.yaml: state.endpoint_url: cannot reach S3 at http://127.0.0.1:",
    "credentials": "segops.yaml: state.bucket: S3 refused the AWS credentials in use",
    "bucket": "segops.yaml: state.bucket: the bucket 'no-such-bucket' does not exist",
    "no-credentials": "segops.yaml: state.bucket: no AWS credentials found",
    "wrong-secret": "segops.yaml: state.bucket: S3 refused the AWS credentials in use for "
    "s3://segops-ci/",
}


CODES = {"credentials": "(InvalidAccessKeyId)", "wrong-secret": "(SignatureDoesNotMatch)"}


def _iam_access_key(server: S3Server) -> str:
    """Create an IAM user with an access key on the server; return the key's id."""
    iam = boto3.client(
        "iam",
        region_name=REGION,
        endpoint_url=server.endpoint_url,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    name = f"ci-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    return iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else b"/"
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_bad_s3_settings_are_clear_errors_that_change_nothing(
    tmp_path: Path,
    server: S3Server,
    prefix: str,
    defect: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket, url = BUCKET, server.endpoint_url
    if defect == "unreachable":
        url = f"http://127.0.0.1:{_closed_port()}"
    elif defect == "bucket":
        bucket = "no-such-bucket"
    elif defect == "no-credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    elif defect == "wrong-secret":  # a key moto's IAM knows, signed with the wrong secret
        key = _iam_access_key(server)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    root = bundled_copy(tmp_path / "ws", s3_state(bucket, prefix, url))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    before = _tree(root)
    assert segops(root, "validate")[0] == 0  # validate never reaches the state
    checked = defect in ("credentials", "wrong-secret")
    if checked:
        check_credentials(server.endpoint_url, True)
    try:
        results = [(args, *segops(root, *args)) for args in COMMANDS]
    finally:
        if checked:
            check_credentials(server.endpoint_url, False)
    for args, code, out, err in results:
        where = f"{defect}: segops {' '.join(args)}"
        assert code == 1, f"{where} exited {code}: {out}{err}"
        assert err.startswith("Error: ") and DEFECTS[defect] in err, f"{where}: {err}"
        assert CODES.get(defect, "") in err, f"{where}: {err}"
        assert "Traceback" not in out + err and "unexpected error" not in err, where
        assert SECRET_KEY not in out + err, where
    assert _tree(root) == before, "the workspace changed"
    assert list(temp.iterdir()) == [], "files left in the temp dir"
    assert objects(server, BUCKET, prefix) == {}, "something was written to S3"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("state: {backend: s3}", "state: missing required key 'bucket'"),
        ("state: {backend: s3, bucket: b-1, path: x}", "state.path: path goes with backend local"),
        ("state: {bucket: b-1}", "state.bucket: bucket goes with backend: s3"),
        ("state: {backend: local, region: eu-west-1}", "state.region: region goes with backend"),
        ("state: {backend: s3, bucket: Bad_Name}", "state.bucket: must be an S3 bucket name"),
        ("state: {backend: s3, bucket: b-1, prefix: /abs}", "state.prefix: must be a key prefix"),
        ("state: {backend: s3, bucket: b-1, endpoint_url: 'http://k:s@h'}", "state.endpoint_url"),
        ("state: {backend: gcs}", 'state.backend: must be one of "local", "s3"'),
    ],
)
def test_state_settings_are_checked(tmp_path: Path, state: str, message: str) -> None:
    root = bundled_copy(tmp_path / "ws", state + "\n")
    code, out, err = segops(root, "validate")
    assert code == 1 and message in err, err
    assert "Traceback" not in err
