"""Canary credentials must never appear in any output, log, plan, state or published file."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

from tests.crash.harness import (
    ENV,
    MICS_TOKEN,
    MOE_KEY,
    MOE_WORKSPACE,
    platforms,
    segops,
)
from tests.crash.workspace import Desired

WRONG_KEY = "CANARY-wrong-key-77aa"


def forms(secret: str) -> set[str]:
    """The ways a secret can leak: raw, base64 (Basic auth) and URL-encoded."""
    return {secret, base64.b64encode(secret.encode()).decode(), quote(secret, safe="")}


CANARIES = (
    forms(MICS_TOKEN)
    | forms(MOE_KEY)
    | forms(WRONG_KEY)
    | forms(f"{MOE_WORKSPACE}:{MOE_KEY}")
    | forms(f"{MOE_WORKSPACE}:{WRONG_KEY}")
)


def leaks(data: bytes) -> set[str]:
    return {c for c in CANARIES if c.encode() in data}


def test_no_secret_anywhere(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    seen: list[tuple[str, bytes]] = []
    desired = Desired()
    with platforms() as (mics, moe):

        def set_desired(rng: random.Random) -> None:
            desired.change("add/remove", "add/remove", rng)
            desired.write(root, mics.base_url, moe.base_url)

        set_desired(random.Random(3))
        plan_file = tmp_path / "p.segplan"
        for args in (
            ["validate"],
            ["plan", "-out", str(plan_file)],
            ["show", str(plan_file)],
            ["show", str(plan_file), "--format", "json"],
            ["apply", str(plan_file)],
        ):
            code, output = segops(root, *args)
            assert code == 0, output
            seen.append((" ".join(args), output.encode()))
        set_desired(random.Random(4))
        # A child process, as CI runs it: its stdout and stderr are the logs.
        child = subprocess.run(
            [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
            env={**ENV, "PATH": "/usr/bin:/bin"},
            capture_output=True,
        )
        assert child.returncode == 0, child.stderr.decode()
        seen += [("child stdout", child.stdout), ("child stderr", child.stderr)]
        # A refused key: the error must say so without echoing it.
        set_desired(random.Random(5))
        refused = subprocess.run(
            [sys.executable, "-m", "segops", "-C", str(root), "apply", "--auto-approve"],
            env={**ENV, "TRIAL_MOE_KEY": WRONG_KEY, "PATH": "/usr/bin:/bin"},
            capture_output=True,
        )
        assert refused.returncode == 1
        seen += [("refused stdout", refused.stdout), ("refused stderr", refused.stderr)]
        moe.wait_idle()
        seen += [(f"published file {i}", data) for i, data in enumerate(moe.processor.downloaded)]
        assert moe.processor.downloaded, "no published file was fetched: nothing was checked"
        bodies = [r.body for r in moe.server.requests + mics.server.requests]
        seen += [(f"request body {i}", body) for i, body in enumerate(bodies)]
    with zipfile.ZipFile(plan_file) as archive:
        seen += [(f"plan entry {n}", archive.read(n)) for n in archive.namelist()]
    seen += [(str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file()]
    seen.append(("plan file", plan_file.read_bytes()))
    found = {name: leaks(data) for name, data in seen if leaks(data)}
    assert found == {}
    assert any(name.startswith(".segops/") for name, _ in seen)
