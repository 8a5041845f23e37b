"""Canary credentials must never appear in any output, log, plan, state or published file."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from emulators._server import Faults
from emulators.postgres import PASSWORD as PG_PASSWORD
from emulators.postgres import PostgresServer
from segops.cli import app
from tests.conftest import write_tree
from tests.crash.harness import (
    ENV,
    MICS_TOKEN,
    MOE_KEY,
    MOE_WORKSPACE,
    platforms,
    segops,
)
from tests.crash.workspace import UNIVERSE, Desired, email_hash
from tests.s3server import S3Server
from tests.s3state import SECRET_KEY, set_aws_env

WRONG_KEY = "CANARY-wrong-key-77aa"


def sources_yaml(endpoint_url: str) -> str:
    return f"""\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 256MB, threads: 1}}
connections:
  out: {{platform: files, target: mediarithmics, path: out}}
sources:
  lake: {{type: s3, region: us-east-1, endpoint_url: "{endpoint_url}"}}
  db: {{type: postgres, dsn_env: CANARY_DSN}}
"""


def sources_manifest(name: str, source: str) -> str:
    return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: {name}}}
spec:
  source:
    {source}
  destinations:
    - connection: out
      datamart_id: "1"
      segment_technical_name: {name}
      identifier: {{kind: email_hash, column: email_hash, format: sha256}}
"""


def forms(secret: str) -> set[str]:
    """The ways a secret can leak: raw, base64 (Basic auth) and URL-encoded."""
    return {secret, base64.b64encode(secret.encode()).decode(), quote(secret, safe="")}


CANARIES = (
    forms(MICS_TOKEN)
    | forms(MOE_KEY)
    | forms(WRONG_KEY)
    | forms(f"{MOE_WORKSPACE}:{MOE_KEY}")
    | forms(f"{MOE_WORKSPACE}:{WRONG_KEY}")
)


def leaks(data: bytes) -> set[str]:
    return {c for c in CANARIES if c.encode() in data}


def test_no_secret_anywhere(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    seen: list[tuple[str, bytes]] = []
    desired = Desired()
    with platforms() as (mics, moe):

        def set_desired(rng: random.Random) -> None:
            desired.change("add/remove", "add/remove", rng)
            desired.write(root, mics.base_url, moe.base_url)

        set_desired(random.Random(3))
        plan_file = tmp_path / "p.segplan"
        for args in (
            ["validate"],
            ["plan", "-out", str(plan_file)],
            ["show", str(plan_file)],
            ["show", str(plan_file), "--format", "json"],
            ["apply", str(plan_file)],
        ):
            code, output = segops(root, *args)
            assert code == 0, output
            seen.append((" ".join(args), output.encode()))
        set_desired(random.Random(4))
        # A child process, as CI runs it: its stdout and stderr are the logs.
        child = subprocess.run(
            [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
            env={**ENV, "PATH": "/usr/bin:/bin"},
            capture_output=True,
        )
        assert child.returncode == 0, child.stderr.decode()
        seen += [("child stdout", child.stdout), ("child stderr", child.stderr)]
        # A refused key: the error must say so without echoing it.
        set_desired(random.Random(5))
        refused = subprocess.run(
            [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
            env={**ENV, "TRIAL_MOE_KEY": WRONG_KEY, "PATH": "/usr/bin:/bin"},
            capture_output=True,
        )
        assert refused.returncode == 1
        seen += [("refused stdout", refused.stdout), ("refused stderr", refused.stderr)]
        moe.wait_idle()
        seen += [(f"published file {i}", data) for i, data in enumerate(moe.processor.downloaded)]
        assert moe.processor.downloaded, "no published file was fetched: nothing was checked"
        bodies = [r.body for r in moe.server.requests + mics.server.requests]
        seen += [(f"request body {i}", body) for i, body in enumerate(bodies)]
    with zipfile.ZipFile(plan_file) as archive:
        seen += [(f"plan entry {n}", archive.read(n)) for n in archive.namelist()]
    seen += [(str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()]
    seen.append(("plan file", plan_file.read_bytes()))
    found = {name: leaks(data) for name, data in seen if leaks(data)}
    assert found == {}
    assert any(name.startswith(".segops/") for name, _ in seen)


# -- sources: the DSN of a database and the AWS secret key of object storage ----------------


def test_no_source_secret_anywhere(
    tmp_path: Path, pg: PostgresServer, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL DSN (with its password) and the AWS secret key never leave the process:
    not in output (success, refusals, errors), plan files, state, outputs or a child's logs."""
    set_aws_env(monkeypatch, tmp_path)
    dsn = pg.dsn()
    pg.execute(
        "DROP TABLE IF EXISTS canary",
        "CREATE TABLE canary AS SELECT encode(sha256(i::text::bytea), 'hex') AS email_hash "
        "FROM generate_series(1, 40) i",
    )
    client = s3.client()
    if "canary" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket="canary")
    rows = "".join(f"{hashlib.sha256(str(i).encode()).hexdigest()}\n" for i in range(30))
    client.put_object(Bucket="canary", Key="m/a.csv", Body=f"email_hash\n{rows}".encode())
    root = tmp_path / "ws"
    write_tree(
        root,
        {
            "segops.yaml": sources_yaml(s3.endpoint_url),
            "segments/db.yaml": sources_manifest("db", "sql: {connection: db, query_file: q.sql}"),
            "segments/q.sql": "SELECT email_hash FROM canary",
            "segments/lake.yaml": sources_manifest(
                "lake", "csv: {url: 's3://canary/m/*.csv', connection: lake}"
            ),
        },
    )
    env = {"CANARY_DSN": dsn}
    seen: list[tuple[str, bytes]] = []
    plan_file = tmp_path / "p.segplan"
    for args in (
        ["validate"],
        ["plan", "-out", str(plan_file)],
        ["show", str(plan_file)],
        ["show", str(plan_file), "--format", "json"],
        ["apply", str(plan_file)],
    ):
        result = CliRunner().invoke(app, ["-C", str(root), *args], env=env)
        assert result.exit_code == 0, result.output
        seen.append((" ".join(args), result.output.encode()))
    pg.execute("DELETE FROM canary WHERE email_hash < '4'")
    wrong = pg.dsn("CANARY-wrong-pg-pass")
    broken = {
        "child": env,
        "wrong password": {"CANARY_DSN": wrong},
        "unreachable": {"CANARY_DSN": dsn.replace(f":{pg.port}/", ":1/")},
        "bad option": {"CANARY_DSN": dsn + "?CANARY-opt=1"},
        "bad port": {"CANARY_DSN": f"host=127.0.0.1 port=x password={PG_PASSWORD} user=u"},
    }
    for name, extra in broken.items():
        child = subprocess.run(
            [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
            env={**os.environ, **extra},
            capture_output=True,
        )
        assert (child.returncode == 0) == (name == "child"), child.stderr.decode()
        seen += [(f"{name} stdout", child.stdout), (f"{name} stderr", child.stderr)]
    with zipfile.ZipFile(plan_file) as archive:
        seen += [(f"plan entry {n}", archive.read(n)) for n in archive.namelist()]
    seen += [(str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()]
    secrets = forms(dsn) | forms(PG_PASSWORD) | forms("CANARY-wrong-pg-pass") | forms(wrong)
    secrets |= forms(SECRET_KEY)
    found = {name: {s for s in secrets if s.encode() in data} for name, data in seen}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert any(name.startswith(".segops/") for name, _ in seen)
    assert any(b"refused the user or the password" in data for _, data in seen)
    assert any(b"cannot connect" in data for _, data in seen)


MEMBERS = {e for e in UNIVERSE} | {email_hash(e) for e in UNIVERSE}


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        (["-vv"], {}),
        (["-v"], {}),
        ([], {"SEGOPS_LOG": "debug"}),
        ([], {"SEGOPS_LOG": "info"}),
        ([], {"SEGOPS_LOG": "warn"}),
    ],
    ids=["-vv", "-v", "debug", "info", "warn"],
)
def test_no_secret_and_no_member_in_the_logs(
    tmp_path: Path, flags: list[str], env: dict[str, str]
) -> None:
    """Every log level, on stderr and in the JSON-lines file, with retries and a refused key."""
    root = tmp_path / "ws"
    log_file = tmp_path / "segops.log"
    desired = Desired()
    faults = Faults(error_rate=0.2, seed=3)  # retries are logged too
    seen: list[tuple[str, bytes]] = []
    with platforms(faults) as (mics, moe):
        for seed, key in ((6, MOE_KEY), (7, WRONG_KEY)):
            desired.change("add/remove", "add/remove", random.Random(seed))
            desired.write(root, mics.base_url, moe.base_url)
            child = subprocess.run(
                [sys.executable, "-m", "segops", *flags, "-C", str(root)]
                + ["apply", "--auto-approve"],
                env={
                    **ENV,
                    "TRIAL_MOE_KEY": key,
                    "PATH": "/usr/bin:/bin",
                    "SEGOPS_LOG_FILE": str(log_file),
                    **env,
                },
                capture_output=True,
            )
            assert child.returncode == (0 if key == MOE_KEY else 1), child.stderr.decode()
            seen += [(f"stdout {seed}", child.stdout), (f"stderr {seed}", child.stderr)]
        moe.wait_idle()
    log = log_file.read_bytes()
    seen.append(("log file", log))
    found = {name: leaks(data) for name, data in seen if leaks(data)}
    assert found == {}
    members = {name: [m for m in MEMBERS if m.encode() in data] for name, data in seen}
    assert {name: hits for name, hits in members.items() if hits} == {}
    entries = [json.loads(line) for line in log.splitlines()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    level = env.get("SEGOPS_LOG") or {1: "info", 2: "debug"}.get(len(flags[0]) - 1 if flags else 0)
    calls = [e for e in entries if e.get("event") == "http"]
    if level == "debug":
        assert calls and {"method", "path", "status", "attempt", "duration"} <= set(calls[0])
        assert any(e.get("event") == "poll" for e in entries)
        assert "?" not in "".join(str(c["path"]) for c in calls)
    else:
        assert calls == []
    if level in ("debug", "info"):
        assert any(e.get("event") == "retry" for e in entries)
        assert b"info" in b"".join(data for name, data in seen if name.startswith("stderr"))
    else:
        assert {e["level"] for e in entries} <= {"warn"}
