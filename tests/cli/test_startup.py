"""Start-up stays light: heavy libraries are imported only by the commands that use them.

Wall time is measured by `make bench` (bench/startup.py), not here; these tests pin what
makes it: which modules `import segops.cli` and the quick commands load.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run

REPO = Path(__file__).resolve().parents[2]
# Libraries a start-up must not pay for: each costs tens of milliseconds to import.
HEAVY = (
    "duckdb",
    "httpx",
    "httpcore",
    "jsonschema",
    "pyarrow",
    "boto3",
    "botocore",
    "rich",
    "yaml",
    "ruamel",
    "deepdiff",
    "pydantic",
    "pyspark",
)
_IMPORTED = re.compile(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)")


def imported(*args: str) -> set[str]:
    """Return the top-level packages a `python -m segops ARGS` process imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "segops", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {name.split(".")[0] for name in _IMPORTED.findall(done.stderr)}


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = "import sys, segops.cli; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    loaded = {name.split(".")[0] for name in done.stdout.split()}
    assert loaded & set(HEAVY) == set()


def test_the_check_sees_a_heavy_import() -> None:
    """The import scan works: a command that reads sources does load DuckDB."""
    assert "duckdb" in imported("-C", str(REPO / "manifests"), "validate")


@pytest.mark.parametrize("args", [["--version"], ["version"], ["--help"], ["plan", "--help"]])
def test_quick_commands_load_no_heavy_library(args: list[str]) -> None:
    assert imported(*args) & set(HEAVY) == set()


def test_validate_loads_neither_http_nor_aws_nor_rich() -> None:
    loaded = imported("-C", str(REPO / "manifests"), "validate")
    unused = {"httpx", "httpcore", "boto3", "botocore", "rich", "pyarrow", "pydantic"}
    assert loaded & unused == set()


def test_a_choice_option_is_read_without_pydantic(tmp_path: Path) -> None:
    """`--format` (an enum) is coerced by segops.ui.typerfast: a plan imports no pydantic,
    and a value that is not a choice is refused with the choices, before anything runs."""
    import shutil

    workspace = shutil.copytree(REPO / "manifests", tmp_path / "workspace")
    assert "pydantic" not in imported("-C", str(workspace), "plan", "--format", "json")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "segops", "-C", str(empty), "plan", "--format", "JSON"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1  # segops' exit code for bad input, usage errors included
    assert "'JSON' is not one of 'text', 'json', 'markdown'." in done.stderr
    assert list(empty.iterdir()) == []


def test_version_option_and_command_agree(workspace: Path) -> None:
    from segops.version import version

    assert run(workspace, "--version")[:2] == (0, f"segops {version()}\n")
    assert run(workspace, "version")[:2] == (0, f"segops {version()}\n")


def test_completion_script_is_offered() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "segops", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "_SEGOPS_COMPLETE" in done.stdout and "complete" in done.stdout


def test_completion_completes_commands_and_options() -> None:
    env = {"PATH": "/usr/bin:/bin", "_SEGOPS_COMPLETE": "complete_bash"}
    words = {"COMP_WORDS": "segops pl", "COMP_CWORD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "segops"], capture_output=True, text=True, env={**env, **words}
    )
    assert "plan" in done.stdout.split()
    words = {"COMP_WORDS": "segops plan --det", "COMP_CWORD": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "segops"], capture_output=True, text=True, env={**env, **words}
    )
    assert "--detailed-exitcode" in done.stdout.split()


def test_a_plan_on_the_duckdb_engine_never_imports_pyspark(tmp_path: Path) -> None:
    """pyspark (and its JVM) is for workspaces that choose `engine: {kind: spark}`."""
    import shutil

    shutil.copytree(REPO / "manifests", tmp_path / "ws")
    loaded = imported("-C", str(tmp_path / "ws"), "plan")
    assert "duckdb" in loaded
    assert "pyspark" not in loaded and "py4j" not in loaded


def test_a_plan_imports_the_settings_differ_only_when_settings_changed(tmp_path: Path) -> None:
    """deepdiff (and pandas, which it imports when installed) only when settings changed."""
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(REPO / "manifests", ws)
    assert run(ws, "apply", "--auto-approve")[0] == 0
    assert imported("-C", str(ws), "plan") & {"deepdiff", "pandas"} == set()
    manifest = ws / "segments" / "cart_abandoners.yaml"
    text = manifest.read_text()
    assert "expiration_duration: 10080" in text
    manifest.write_text(text.replace("expiration_duration: 10080", "expiration_duration: 20160"))
    assert "deepdiff" in imported("-C", str(ws), "plan")
