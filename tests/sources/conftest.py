"""Real servers for the sources tests: PostgreSQL (initdb + pg_ctl) and an S3-compatible server.

The S3 server runs in a process of its own: segops reads objects through pyarrow inside the
test process, and a server thread there would wait on the test's own work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PostgresServer, postgres_server
from tests.s3server import S3Server
from tests.s3state import set_aws_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3-compatible server (segops' emulator) in its own process, on a free port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.s3", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "S3 emulator on http://127.0.0.1:PORT (Ctrl-C stops)"
        assert line.startswith("S3 emulator on "), line
        yield S3Server(line.split()[3])
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_aws_env(monkeypatch, tmp_path)
