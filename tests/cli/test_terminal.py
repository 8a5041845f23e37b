"""Colour and progress through a pseudo-terminal; plain output everywhere else."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.terminal import ANY_ESCAPE, COLOUR, on_terminal

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundled(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(REPO / "manifests", root)
    return root


def test_a_plan_on_a_terminal_is_in_colour(bundled: Path) -> None:
    code, seen = on_terminal(["-C", str(bundled), "plan", "--no-progress"])
    assert code == 0, seen.decode(errors="replace")
    assert b"\x1b[32m\x1b[1m  + \x1b[0m" in seen  # a create, in bold green
    assert b"\x1b[32m+24\x1b[0m" in seen  # member counts
    assert b"\x1b[1mPlan:\x1b[0m" in seen


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--no-color"], {}), ([], {"NO_COLOR": "1"}), (["--no-color"], {"NO_COLOR": "1"})],
    ids=["--no-color", "NO_COLOR", "both"],
)
def test_no_color_turns_colour_off(bundled: Path, args: list[str], env: dict[str, str]) -> None:
    code, seen = on_terminal(["-C", str(bundled), *args, "plan", "--no-progress"], env)
    assert code == 0
    assert b"Plan: 8 to create" in seen
    assert ANY_ESCAPE.search(seen) is None


def test_no_color_after_the_command_too(bundled: Path) -> None:
    code, seen = on_terminal(["-C", str(bundled), "plan", "--no-progress", "--no-color"])
    assert code == 0 and b"Plan: 8 to create" in seen and ANY_ESCAPE.search(seen) is None


def test_a_plan_written_to_a_file_has_no_colour(bundled: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.txt"
    code, _ = on_terminal(["-C", str(bundled), "plan"], stdout_file=out)
    assert code == 0
    text = out.read_bytes()
    assert b"Plan: 8 to create" in text and ANY_ESCAPE.search(text) is None


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_json_and_markdown_are_never_coloured(bundled: Path, fmt: str) -> None:
    code, seen = on_terminal(["-C", str(bundled), "plan", "--no-progress", "--format", fmt])
    assert code == 0 and ANY_ESCAPE.search(seen) is None


def test_apply_results_and_errors_are_coloured(bundled: Path) -> None:
    code, seen = on_terminal(["-C", str(bundled), "apply", "--auto-approve", "--no-progress"])
    assert code == 0
    assert b": \x1b[32mdone\x1b[0m (" in seen
    assert b"\x1b[1m\x1b[32mApply complete! 8 destinations applied.\x1b[0m" in seen
    (bundled / "segops.yaml").write_text("version: 2\n")
    code, seen = on_terminal(["-C", str(bundled), "validate"])
    assert code == 1 and seen.startswith(b"\x1b[1m\x1b[31mError:\x1b[0m segops.yaml")


def test_progress_bars_on_a_terminal(bundled: Path) -> None:
    code, seen = on_terminal(["-C", str(bundled), "apply", "--auto-approve"])
    assert code == 0
    text = seen.decode(errors="replace")
    assert "Diffing members" in text and "/8 destinations" in text
    assert "ETA" in text and "Applying" in text
    assert "\x1b[?25l" in text  # rich hides the cursor while it draws


def test_no_progress_draws_nothing(bundled: Path) -> None:
    code, seen = on_terminal(["-C", str(bundled), "--no-progress", "plan"])
    assert code == 0 and b"Diffing members" not in seen and b"\x1b[?25l" not in seen


def test_in_ci_a_terminal_gets_plain_milestone_lines(bundled: Path) -> None:
    env = {"CI": "true", "SEGOPS_PROGRESS_INTERVAL": "0"}
    code, seen = on_terminal(["-C", str(bundled), "plan"], env)
    assert code == 0
    assert b"\x1b[?25l" not in seen
    assert b"Diffing members: done: 8/8 destinations" in seen


def test_off_a_terminal_milestones_go_to_stderr_only(bundled: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segops", "-C", str(bundled), "plan", "--format", "json"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "SEGOPS_PROGRESS_INTERVAL": "0"},
        timeout=120,
    )
    assert done.returncode == 0
    assert done.stdout.startswith(b"{") and b"Diffing" not in done.stdout
    assert b"Diffing members: 1/8 destinations" in done.stderr
    assert b"Diffing members: done: 8/8 destinations" in done.stderr
    assert ANY_ESCAPE.search(done.stderr) is None


def test_short_steps_print_no_milestone_by_default(bundled: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segops", "-C", str(bundled), "plan"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == b""


def test_colour_codes_pattern_sees_colour() -> None:
    assert COLOUR.search(b"\x1b[31mx\x1b[0m") and not COLOUR.search(b"\x1b[0m")
