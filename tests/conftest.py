"""Shared fixtures: small workspaces written into a temporary folder, and the CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import blake3
import pytest
from typer.testing import CliRunner

from emulators.postgres import PostgresServer, postgres_server
from segops.cli import app
from tests.s3server import S3Server
from tests.sparkserver import spark_connect_server

UPDATE_GOLDEN = os.environ.get("SEGOPS_UPDATE_GOLDEN") == "1"

SEGOPS_YAML = """\
version: 1
manifests: ["segments/**/*.yaml"]
engine: {memory_limit: 512MB, threads: 1}
connections:
  files-mics:
    platform: files
    target: mediarithmics
    path: out/mics
  files-mics-csv:
    platform: files
    target: mediarithmics
    path: out/mics-csv
    mime_type: TEXT_CSV
  files-moe:
    platform: files
    target: moengage
    path: out/moe
"""


def mics_manifest(
    name: str, source: str, technical_name: str | None = None, extra: str = ""
) -> str:
    """Return a Segment manifest of email hashes sent to the `files-mics` connection.

    `source` is the YAML of spec.source (e.g. "csv: {path: ../data/x.csv}"); `extra` is
    appended after the destination.
    """
    return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: {name}}}
spec:
  source:
    {source}
  destinations:
    - connection: files-mics
      datamart_id: "1509"
      segment_technical_name: {technical_name or name}
      identifier: {{kind: email_hash, column: email_hash, format: sha256}}
{extra}"""


def file_pin(path: Path) -> str:
    """The data pin a source file must get: its BLAKE3, computed here in one call."""
    return f"blake3:{blake3.blake3(path.read_bytes()).hexdigest()}"


def write_tree(root: Path, files: Mapping[str, str]) -> None:
    """Write `files` (relative path -> text) under `root`."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())


def run(root: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process on workspace `root`; return (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, ["-C", str(root), *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def check_golden(path: Path, actual: str) -> None:
    """Compare `actual` with the golden file; `make golden` rewrites it instead."""
    if UPDATE_GOLDEN or not path.exists():
        path.write_text(actual)
        if not UPDATE_GOLDEN:
            pytest.fail(f"{path} did not exist and was written: review it and commit it")
    assert actual == path.read_text(), f"{path} differs (run `make golden` and review the diff)"


def addresses_through(monkeypatch: pytest.MonkeyPatch, owner: type, method: str) -> list[str]:
    """Wrap `owner.method(self, request, ...)`; return the list of the request addresses it
    is called with, in order (the call itself runs unchanged)."""
    seen: list[str] = []
    real = getattr(owner, method)

    def recorded(self: object, request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(request.address)
        return real(self, request, *args, **kwargs)

    monkeypatch.setattr(owner, method, recorded)
    return seen


def plan_json(root: Path, *args: str) -> dict:  # type: ignore[type-arg]
    code, out, err = run(root, "plan", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace with the three standard `files` connections."""
    root = tmp_path / "ws"
    write_tree(root, {"segops.yaml": SEGOPS_YAML})
    return root


# -- real servers for sources, started once per session when a test asks for one ------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def spark_remote() -> Iterator[str]:
    """A Spark Connect server in local mode (a real Spark), started once: its sc:// URL."""
    with spark_connect_server() as url:
        yield url


@pytest.fixture(autouse=True)
def _settled_duckdb_default_connection() -> Iterator[None]:
    """End whatever result a test left unread on DuckDB's default connection.

    `duckdb.execute` and `duckdb.sql` share one connection per process; DuckDB 2.0 refuses
    new work on it while a result is pending (a COPY's, or a `fetchone()` that did not read
    to the end), so a test doing that failed the next test of its worker that used it.
    """
    yield
    import duckdb

    complete = getattr(duckdb.default_connection(), "complete", None)  # DuckDB 2
    if complete is not None:
        complete()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test`), the tests that use the Spark Connect server run on
    one worker: one server starts (a JVM, about 15 s), not one per worker."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if "spark_remote" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("spark"))


def with_engine(segops_yaml: str, engine: Mapping[str, object]) -> str:
    """Return segops.yaml text whose `engine` section also holds `engine`'s keys."""
    import yaml

    data = yaml.safe_load(segops_yaml)
    data["engine"] = {**data.get("engine", {}), **engine}
    return str(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3-compatible server (segops' emulator) on a free port, in its own process.

    segops reads objects through pyarrow inside the test process, where a server thread
    would wait on the test's own work.
    """
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
