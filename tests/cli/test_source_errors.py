"""Bad source files end in segops' own message: workspace-relative file, exact line, what to do.

Never DuckDB's words, never a temporary path, never a member value, never a traceback or a
hang; and the data file's own path may hold digits without them being taken for a line.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from segops.config.workspace import load_workspace
from segops.errors import SourceError
from segops.operations import Context, engine_for, make_plan, store_for
from tests.cli.sources import clean, manifest, write_workspace
from tests.conftest import run
from tests.unit.test_sources import BROKEN_CSV, BROKEN_NDJSON, SECRET

DATA = "data/2024-11/v3"  # digits in the path must never be read as a line number


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging forever if a read blocks (a hang guard, not a timing)."""

    def stop(*_: object) -> None:
        raise TimeoutError("segops blocked on a source that is not a regular file")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", BROKEN_CSV.values(), ids=BROKEN_CSV.keys())
def test_broken_csv_names_file_and_line(workspace: Path, case: tuple[bytes, int, str]) -> None:
    content, line, words = case
    workspace_ = _with(workspace, f"csv: {{path: ../{DATA}/m.csv}}", {f"{DATA}/m.csv": content})
    code, out, err = run(workspace_, "plan")
    assert code == 1 and out == ""
    assert f"{DATA}/m.csv:{line}: " in err and words in err
    assert clean(err, SECRET, str(workspace_)), err


@pytest.mark.parametrize("case", BROKEN_NDJSON.values(), ids=BROKEN_NDJSON.keys())
@pytest.mark.parametrize("command", ["plan", "validate"])
def test_broken_ndjson_names_file_and_line(
    workspace: Path, case: tuple[bytes, int, str], command: str
) -> None:
    content, line, words = case
    root = _with(workspace, f"ndjson: {{path: ../{DATA}/m.ndjson}}", {f"{DATA}/m.ndjson": content})
    code, _, err = run(root, command)
    if command == "validate" and code == 0:
        return  # validate scans keys only: a line that is valid JSON but no object is plan's
    assert code == 1
    assert f"{DATA}/m.ndjson:{line}: " in err and words in err
    assert clean(err, SECRET, str(root)), err


def test_a_damaged_parquet_file_is_named_without_jargon(workspace: Path) -> None:
    root = _with(workspace, "parquet: {path: ../data/m.parquet}", {"data/m.parquet": b"PAR1" * 9})
    for command in ("validate", "plan"):
        code, _, err = run(root, command)
        assert code == 1
        assert "data/m.parquet: is not a readable Parquet file" in err
        assert clean(err, str(root)), err


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))  # the socket file stays after the socket is closed


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (Path.mkdir, "a folder"),
        (_fifo, "a named pipe"),
        (_socket, "a socket"),
    ],
    ids=["directory", "fifo", "socket"],
)
@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_a_source_that_is_not_a_regular_file_is_refused(
    workspace: Path, alarm: None, make: object, kind: str, command: str
) -> None:
    root = _with(workspace, "csv: {path: ../data/m.csv}", {})
    (root / "data").mkdir()
    make(root / "data" / "m.csv")  # type: ignore[operator]
    args = [command, "--auto-approve"] if command == "apply" else [command]
    code, _, err = run(root, *args)
    assert code == 1
    assert f"data/m.csv: is {kind}, not a regular file" in err
    assert not (root / ".segops").exists() or command == "apply"


@pytest.mark.parametrize("kind", ["ndjson", "csv", "parquet"])
def test_a_source_replaced_by_a_pipe_after_loading_is_refused_before_reading(
    workspace: Path, alarm: None, tmp_path: Path, kind: str
) -> None:
    root = _with(workspace, f"{kind}: {{path: ../data/m.{kind}}}", {f"data/m.{kind}": b"id\n"})
    ws = load_workspace(root)
    (root / f"data/m.{kind}").unlink()
    os.mkfifo(root / f"data/m.{kind}")
    ctx = Context(ws, store_for(ws, tmp_path / "work"), tmp_path / "work")
    with engine_for(ctx) as engine, pytest.raises(SourceError) as raised:
        make_plan(ctx, engine, "test")
    assert f"data/m.{kind}: is a named pipe, not a regular file" in str(raised.value)


def test_a_damaged_snapshot_is_an_error_not_a_traceback(workspace: Path) -> None:
    root = _with(workspace, "csv: {path: ../data/m.csv}", {"data/m.csv": b"id\ncrm-1\ncrm-2\n"})
    assert run(root, "apply", "--auto-approve")[0] == 0
    for snapshot in (root / ".segops").rglob("*.parquet"):
        snapshot.write_bytes(b"not parquet at all")
    (root / "data/m.csv").write_bytes(b"id\ncrm-1\ncrm-3\n")
    code, _, err = run(root, "plan")  # run() re-raises any exception that is not an exit
    assert code == 1
    err = err.replace(f"`segops -C {root} ", "`segops ")  # the hint repeats -C as given
    assert clean(err, "crm-1", "crm-2", "crm-3", str(root)), err


def test_running_out_of_memory_says_which_setting_to_raise(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # validate refuses limits under 64MB; let 4MB through to run out of memory quickly
    monkeypatch.setattr("segops.config.workspace.engine_problems", lambda *_: [])
    rows = "".join(f'crm-{i:09d},{{"basket": {i}}}\n' for i in range(200_000))
    root = _with(
        workspace,
        "csv: {path: ../data/m.csv}",
        {"data/m.csv": ("id,bag\n" + rows).encode()},
        extra="      data_bag: {column: bag}\n",
    )
    config = (root / "segops.yaml").read_text()
    (root / "segops.yaml").write_text(config.replace("memory_limit: 512MB", "memory_limit: 4MB"))
    code, _, err = run(root, "plan")
    assert code == 1
    assert "ran out of memory" in err and "engine.memory_limit" in err
    assert clean(err, "crm-0", str(root)), err


def _with(root: Path, source: str, data: dict[str, bytes], extra: str = "") -> Path:
    return write_workspace(root, manifest(source, extra=extra), data)


@pytest.mark.parametrize("limit", ["99999999TB", "lots"])
def test_an_engine_setting_duckdb_refuses_is_named_not_a_traceback(
    workspace: Path, limit: str
) -> None:
    root = _with(workspace, "csv: {path: ../data/m.csv}", {"data/m.csv": b"id\ncrm-1\n"})
    config = (root / "segops.yaml").read_text()
    (root / "segops.yaml").write_text(
        config.replace("memory_limit: 512MB", f"memory_limit: {limit}")
    )
    for command in ("validate", "plan"):
        code, _, err = run(root, command)  # run() re-raises any exception that is not an exit
        assert code == 1
        assert "segops.yaml" in err and "memory_limit" in err
        assert clean(err, str(root)), err
