"""The last resort: an exception segops did not expect becomes one line and a report file.

A traceback on the terminal says nothing a user can act on and may end up in CI logs, so
the CLI prints one line naming where the full report is. The report goes to the system
temporary folder (never the workspace, which must stay unchanged on error) with mode
0600: the text of an exception may hold member data. The environment is not written,
and the value of every variable whose name looks like a secret is blanked out of the
text, should a library have put one in its message.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from segops.version import version

# Names of environment variables whose values are blanked out of a report.
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSW|CREDENTIAL|AUTH|SESSION", re.IGNORECASE)
_MIN_SECRET = 6  # shorter values are too likely to occur by chance in a path or a number


def report_crash(error: BaseException, argv: Sequence[str]) -> str:
    """Write the report of `error`; return the one line to show the user."""
    kind = type(error).__name__
    try:
        path = write_report(error, argv)
    except OSError as failure:
        return f"segops hit an unexpected error: {kind}; no report written ({failure.strerror})"
    return f"segops hit an unexpected error: {kind}; the full report was written to {path}"


def write_report(error: BaseException, argv: Sequence[str], folder: Path | None = None) -> Path:
    """Write a report of `error` to a new 0600 file in `folder` (the temp dir); return it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    fd, name = tempfile.mkstemp(prefix=f"segops-crash-{stamp}-", suffix=".txt", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as handle:
        handle.write(report_text(error, argv, os.environ))
    return Path(name)


def report_text(error: BaseException, argv: Sequence[str], env: Mapping[str, str]) -> str:
    """Return the report: versions, the command, the traceback; secrets blanked out."""
    text = "".join(
        [
            f"segops {version()} hit an unexpected error\n",
            f"python {platform.python_version()} on {platform.platform()}\n",
            f"command: segops {' '.join(argv)}\n\n",
            *traceback.format_exception(error),
        ]
    )
    secrets = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET}
    for secret in sorted(secrets, key=len, reverse=True):  # a longer secret may hold a shorter
        text = text.replace(secret, "[secret]")
    return text
