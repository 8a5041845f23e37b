"""The last-resort handler: an unexpected exception is one line and a report file, never a
traceback; the report holds no secret and no environment dump."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

import segops.cli
import segops.config.fmt
import segops.config.workspace
import segops.crash
import segops.planning.planfile
from segops.crash import report_text
from segops.errors import GuardError, PlanError
from tests.conftest import mics_manifest, run, write_tree

LINE = re.compile(
    r"segops hit an unexpected error: (\w+); "
    r"the full report was written to (\S+segops-crash-\S+\.txt)"
)
SECRET = "s3cr3t-t0ken-value"


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temp dir for crash reports."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("MICS_API_TOKEN", SECRET)
    monkeypatch.setenv("SEGOPS_TEST_MARKER", "marker-value-not-a-secret")
    return folder


def _raiser(error: BaseException) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise error

    return fail


ERRORS = [
    RuntimeError(f"engine said {SECRET} broke"),
    KeyError("lost"),
    OSError(28, "No space left on device"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    RecursionError("maximum recursion depth exceeded"),
    MemoryError(),
]
# (command line, where to inject the failure)
COMMANDS = [
    (["validate"], (segops.config.workspace, "load_workspace")),
    (["plan"], (segops.config.workspace, "load_workspace")),
    (["apply", "--auto-approve"], (segops.config.workspace, "load_workspace")),
    (["show", "plan.zip"], (segops.planning.planfile, "read_plan")),
    (["fmt"], (segops.config.fmt, "find_reformats")),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(("args", "target"), COMMANDS, ids=lambda c: str(c))
def test_an_unexpected_exception_is_one_line_and_a_private_report(
    workspace: Path,
    reports: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    args: list[str],
    target: tuple[object, str],
) -> None:
    write_tree(workspace, {"segments/a.yaml": mics_manifest("a", "members: []")})
    monkeypatch.setattr(*target, _raiser(error))
    code, out, err = run(workspace, *args)
    assert code == 1
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1
    found = LINE.fullmatch(err.strip())
    assert found, err
    assert found[1] == type(error).__name__
    report = Path(found[2])
    assert report.parent == reports
    assert stat.S_IMODE(report.stat().st_mode) == 0o600  # the error text may hold member data
    text = report.read_text()
    assert "Traceback (most recent call last)" in text and type(error).__name__ in text
    assert f"command: segops -C {workspace} {' '.join(args)}" in text
    assert SECRET not in text and "marker-value-not-a-secret" not in text


def test_a_report_that_cannot_be_written_is_said_so(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segops.crash.tempfile, "mkstemp", _raiser(PermissionError(13, "denied")))
    monkeypatch.setattr(segops.config.workspace, "load_workspace", _raiser(RuntimeError("x")))
    code, out, err = run(workspace, "validate")
    assert code == 1 and "Traceback" not in out + err
    assert err.strip() == "segops hit an unexpected error: RuntimeError; no report written (denied)"


@pytest.mark.parametrize(
    ("error", "code", "label"),
    [
        (PlanError("bad plan"), 1, "Error: bad plan"),
        (GuardError("too many"), 3, "Refused: too many"),
    ],
)
def test_a_segops_error_outside_a_command_handler_is_still_a_message(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, code: int, label: str
) -> None:
    write_tree(workspace, {"segments/a.yaml": ""})
    monkeypatch.setattr(segops.cli, "_render", _raiser(error))
    monkeypatch.setattr(
        segops.planning.planfile, "read_plan", lambda file, key: SimpleNamespace(plan=None)
    )
    found, out, err = run(workspace, "show", "plan.zip")
    assert (found, err.strip()) == (code, label)


@pytest.mark.parametrize(
    ("name", "value", "hidden"),
    [
        ("MICS_API_TOKEN", "abcdef123456", True),
        ("MOE_API_KEY", "key-0123456789", True),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG", True),
        ("DB_PASSWORD", "hunter22", True),
        ("my_auth_header", "Basic dXNlcjpwYXNz", True),
        ("MICS_API_TOKEN", "abc", False),  # too short to tell from any other text
        ("HOME", "/home/someone-else", False),  # not a secret: left as it is
    ],
)
def test_report_blanks_out_secret_looking_variables(name: str, value: str, hidden: bool) -> None:
    error = RuntimeError(f"failed with {value} inside")
    text = report_text(error, ["plan"], {name: value, "OTHER": "other-value"})
    assert (value not in text) is hidden
    assert ("[secret]" in text) is hidden
    assert "other-value" not in text  # the environment is not dumped


def test_a_thread_that_dies_is_reported_like_the_command(
    reports: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(threading, "excepthook", segops.cli._thread_crash)
    thread = threading.Thread(target=_raiser(ValueError(SECRET)))
    thread.start()
    thread.join()
    err = capsys.readouterr().err
    found = LINE.fullmatch(err.strip())
    assert found and found[1] == "ValueError" and "Traceback" not in err
    assert SECRET not in Path(found[2]).read_text()


def test_the_installed_entry_point_prints_no_traceback(workspace: Path, tmp_path: Path) -> None:
    """Through a real process: the console entry point, its exit code and its stderr."""
    script = (
        "import sys, segops.cli as cli, segops.config.workspace as ws\n"
        "def fail(*args): raise LookupError('from a library')\n"
        "ws.load_workspace = fail\n"
        "sys.argv = ['segops', '-C', sys.argv[1], 'validate']\n"
        "cli.main()\n"
    )
    folder = tmp_path / "tmp"
    folder.mkdir()
    env = {**os.environ, "TMPDIR": str(folder), "MICS_API_TOKEN": SECRET}
    done = subprocess.run(
        [sys.executable, "-c", script, str(workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == "" and "Traceback" not in done.stderr
    found = LINE.fullmatch(done.stderr.strip())
    assert found and found[1] == "LookupError"
    assert Path(found[2]).parent == folder
    assert "LookupError: from a library" in Path(found[2]).read_text()
