"""stdout holds the requested format and nothing else, even when DuckDB wants to show progress.

DuckDB prints a progress bar to stdout (from C++, past any Python redirection) once a
query runs longer than `progress_bar_time`. The test forces the bar on for every new
connection (`enable_progress_bar = true`, `progress_bar_time = 0`), which segops must
override, and parses the whole stdout of `plan --format json`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import mics_manifest, write_tree

FORCE_BAR = """
import sys
import duckdb

_connect = duckdb.connect


def forced(*args, **kwargs):
    con = _connect(*args, **kwargs)
    con.execute("SET enable_progress_bar = true")
    con.execute("SET progress_bar_time = 0")
    return con


duckdb.connect = forced
if sys.argv[1] == "control":
    duckdb.connect().execute("SELECT count(*) FROM range(20000000) t(i) WHERE i % 7 = 3").fetchall()
else:
    from segops.cli import main

    sys.argv = ["segops", *sys.argv[1:]]
    main()
"""


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", FORCE_BAR, *args], capture_output=True, timeout=300, check=False
    )


def test_a_forced_progress_bar_never_reaches_stdout(workspace: Path) -> None:
    rows = "".join(hashlib.sha256(str(i).encode()).hexdigest() + "\n" for i in range(50_000))
    write_tree(
        workspace,
        {
            "segments/s.yaml": mics_manifest("s", "csv: {path: ../data/m.csv}"),
            "data/m.csv": "email_hash\n" + rows,
        },
    )
    control = _run("control")
    assert control.returncode == 0 and b"%" in control.stdout  # the bar is on: it would show
    for fmt in ("json", "markdown", "text"):
        result = _run("-C", str(workspace), "plan", "--format", fmt)
        assert result.returncode == 0, result.stderr
        assert b"\r" not in result.stdout and b"\xe2\x96" not in result.stdout  # no bar glyphs
        if fmt == "json":
            plan = json.loads(result.stdout)  # the whole stdout is one JSON document
            assert plan["changes"][0]["members"]["add"] == 50_000
