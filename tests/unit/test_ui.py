"""The terminal side: log levels and scrubbing, milestone lines, colour, option hoisting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from segops.cli import app
from segops.errors import UsageError
from segops.ui import colour
from segops.ui.logs import Logs, level_of
from segops.ui.progress import PlainReporter, duration_text, size_text
from tests.conftest import run


@pytest.mark.parametrize(
    ("verbose", "env", "level"),
    [
        (0, {}, logging.WARNING),
        (1, {}, logging.INFO),
        (2, {}, logging.DEBUG),
        (3, {}, logging.DEBUG),
        (0, {"SEGOPS_LOG": "debug"}, logging.DEBUG),
        (0, {"SEGOPS_LOG": " INFO "}, logging.INFO),
        (0, {"SEGOPS_LOG": "warning"}, logging.WARNING),
        (1, {"SEGOPS_LOG": "debug"}, logging.INFO),  # the flag wins
    ],
)
def test_log_level(verbose: int, env: dict[str, str], level: int) -> None:
    assert level_of(verbose, env) == level


def test_an_unknown_log_level_is_a_usage_error(workspace: Path) -> None:
    with pytest.raises(UsageError, match="SEGOPS_LOG"):
        level_of(0, {"SEGOPS_LOG": "loud"})
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["-C", str(workspace), "version"], env={"SEGOPS_LOG": "x"})
    assert result.exit_code == 1 and "SEGOPS_LOG=" in result.stderr


def test_log_records_are_scrubbed_and_written_as_json_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    path = tmp_path / "log.jsonl"
    env = {"SEGOPS_LOG_FILE": str(path), "MY_API_TOKEN": "tok-123456789"}
    logs = Logs(2, env, lines.append)
    try:
        logs.hide(["moe-key-abcdef"])
        log = logging.getLogger("segops.http")
        log.debug("GET /x with tok-123456789", extra={"event": "http", "status": 200})
        log.info("used moe-key-abcdef", extra={"event": "note", "what": "moe-key-abcdef"})
    finally:
        logs.close()
    assert "tok-123456789" not in "".join(lines) and "moe-key-abcdef" not in "".join(lines)
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["message"] for e in entries] == ["GET /x with [secret]", "used [secret]"]
    assert entries[0]["status"] == 200 and entries[1]["what"] == "[secret]"
    assert entries[0]["logger"] == "segops.http" and entries[0]["level"] == "debug"
    assert path.stat().st_mode & 0o077 == 0
    assert lines[0].endswith("debug http: GET /x with [secret]")
    assert not logging.getLogger("segops").handlers  # closed: nothing left behind


def test_a_log_file_that_cannot_be_opened_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="SEGOPS_LOG_FILE=.*cannot open it"):
        Logs(0, {"SEGOPS_LOG_FILE": str(tmp_path / "no" / "such" / "dir.log")})


def test_a_record_that_cannot_be_formatted_is_dropped_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs = Logs(2, {})
    try:
        logging.getLogger("segops.x").debug("%d", "not a number")
    finally:
        logs.close()
    assert "Traceback" not in capsys.readouterr().err


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_milestones_every_interval_and_a_closing_line() -> None:
    lines: list[str] = []
    clock = Clock()
    reporter = PlainReporter(lines.append, interval=10, clock=clock)
    step = reporter.step("Sending a.mics", 4, "executions", 4_000_000)
    step.advance(1, size=1_000_000)  # before the interval: silent
    clock.now = 12
    step.advance(1, size=1_000_000)
    step.note("execution 3 running")  # within the next interval: silent
    clock.now = 30
    step.note("execution 3 running")
    step.advance(2, size=2_000_000)
    step.close()
    assert lines == [
        "Sending a.mics: 2/4 executions, 2.0 MB of 4.0 MB, 12 s elapsed, about 12 s left",
        "Sending a.mics: execution 3 running",
        "Sending a.mics: done: 4/4 executions, 4.0 MB of 4.0 MB, 30 s",
    ]


def test_a_short_step_prints_nothing() -> None:
    lines: list[str] = []
    reporter = PlainReporter(lines.append, interval=10, clock=Clock())
    step = reporter.step("Diffing members", 8, "destinations", None)
    step.advance(8)
    step.close()
    assert lines == []


def test_sizes_and_durations_for_people() -> None:
    assert [size_text(n) for n in (950, 12_300, 4_100_000, 2e9)] == [
        "950 B",
        "12.3 kB",
        "4.1 MB",
        "2.0 GB",
    ]
    assert [duration_text(s) for s in (4, 125, 120, 4200, 3600)] == [
        "4 s",
        "2 min 5 s",
        "2 min",
        "1 h 10 min",
        "1 h",
    ]


def test_plan_colours() -> None:
    text = (
        "  # a.m will be created\n  + a.m  (mediarithmics via m)\n      members: +3 -2  (0 → 1)\n"
        "Plan: 1 to create.\n⛔ Safety guards stop 1 change\nNo changes. The state matches\n"
    )
    painted = colour.plan_text(text)
    assert "\x1b[1m  # a.m will be created\x1b[0m" in painted
    assert "\x1b[32m\x1b[1m  + \x1b[0ma.m" in painted
    assert "\x1b[32m+3\x1b[0m \x1b[31m-2\x1b[0m" in painted
    assert "\x1b[1m\x1b[31m⛔ Safety guards" in painted
    assert painted.replace("\x1b[0m", "").count("\x1b[") == 10
    assert colour.result_line("a.m: FAILED (+0 ~0 -0 sent): x").startswith("a.m: \x1b[1m\x1b[31m")
    assert colour.error("Refused: too many").startswith("\x1b[1m\x1b[31mRefused:\x1b[0m")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["plan", "--no-color", "-v"], ["--no-color", "-v", "plan"]),
        (["plan", "-vv", "--format", "json"], ["-vv", "plan", "--format", "json"]),
        (["plan", "--segment", "-v"], ["plan", "--segment", "-v"]),  # a value, not a flag
        (["-C", "ws", "apply", "x.segplan", "--no-progress"], ["-C", "ws", "--no-progress"]),
        (["plan", "--", "-v"], ["plan", "--", "-v"]),
        (["state", "migrate", "--to", "s3", "-v"], ["-v", "state", "migrate", "--to", "s3"]),
        (["plan", "-C", "ws"], ["-C", "ws", "plan"]),
    ],
)
def test_global_options_after_the_command(given: list[str], expected: list[str]) -> None:
    from typer.main import get_command

    hoisted = get_command(app).hoisted(given)  # type: ignore[attr-defined]
    assert hoisted[: len(expected)] == expected


def test_global_flags_after_the_command_work(workspace: Path) -> None:
    code, out, err = run(workspace, "validate", "-vv", "--no-progress")
    assert code == 1 and "no manifest file matches" in err
