"""Run segops in a child process on a pseudo-terminal, as a person at a terminal runs it."""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# SGR colour codes (foreground colours, bold): what "in colour" means in these tests
COLOUR = re.compile(rb"\x1b\[[0-9;]*[13][0-9;]*m")
ANY_ESCAPE = re.compile(rb"\x1b\[")


def on_terminal(
    args: list[str],
    env: Mapping[str, str] | None = None,
    stdout_file: Path | None = None,
    timeout: float = 120,
) -> tuple[int, bytes]:
    """Run `python -m segops ARGS` with stdin, stderr (and stdout, unless `stdout_file`) on
    a pseudo-terminal; return its exit code and everything written to the terminal."""
    master, slave = pty.openpty()
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "FORCE_COLOR")}
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "TF_BUILD"):
        base.pop(name, None)
    full = {**base, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **(env or {})}
    out = stdout_file.open("wb") if stdout_file is not None else slave
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "segops", *args],
            stdin=slave,
            stdout=out,
            stderr=slave,
            env=full,
            close_fds=True,
        )
    finally:
        os.close(slave)
        if stdout_file is not None and not isinstance(out, int):
            out.close()
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError as error:  # EIO: the child closed the terminal
                if error.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return process.wait(timeout=timeout), b"".join(chunks)
