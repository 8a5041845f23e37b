"""MoEngage deliveries that cannot silently fail: validate refuses a publisher MoEngage could
never reach, and a callback_url it would never use; `--changed-since` sees untracked data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import SEGOPS_YAML, mics_manifest, plan_json, run, write_tree

MOE = """\
  moe:
    platform: moengage
    workspace_id_env: MOE_WS
    api_key_env: MOE_KEY
{extra}"""
SEGMENT = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: news}
spec:
  source:
    members: [{email: ana@example.com}]
  destinations:
    - connection: moe
      segment: {name: news}
      attribute: {name: email}
"""


def moe_workspace(root: Path, extra: str) -> Path:
    write_tree(
        root,
        {"segops.yaml": SEGOPS_YAML + MOE.format(extra=extra), "segments/news.yaml": SEGMENT},
    )
    return root


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", "connections.moe: missing `publish`: MoEngage downloads member files from a URL"),
        (
            "    publish: {http: {host: 127.0.0.1}}\n",
            "connections.moe.publish.http: serves member files from this machine, which "
            "MoEngage's servers cannot reach: use publish.s3",
        ),
        (
            "    base_url: https://api-02.moengage.com\n    publish: {http: {}}\n",
            "connections.moe.publish.http: serves member files from this machine",
        ),
        (
            "    publish: {s3: {bucket: files-bucket}}\n    callback_url: https://x.example.com/cb\n",
            "connections.moe.callback_url: callback_url is for files connections with target "
            "moengage",
        ),
    ],
    ids=["no-publish", "http-to-moengage", "http-to-a-remote-base-url", "callback_url"],
)
def test_validate_refuses_deliveries_that_cannot_work(
    tmp_path: Path, extra: str, expected: str
) -> None:
    root = moe_workspace(tmp_path / "ws", extra)
    code, out, err = run(root, "validate")
    assert code == 1, out
    assert expected in err
    assert "segops.yaml:" in err


@pytest.mark.parametrize(
    "extra",
    [
        "    publish: {s3: {bucket: files-bucket}}\n",
        "    base_url: http://127.0.0.1:8081\n    publish: {http: {host: 127.0.0.1}}\n",
        "    base_url: http://localhost:8081\n    publish: {http: {}}\n",
    ],
    ids=["s3", "http-for-a-loopback-emulator", "localhost"],
)
def test_validate_accepts_reachable_publishers(tmp_path: Path, extra: str) -> None:
    root = moe_workspace(tmp_path / "ws", extra)
    code, out, err = run(root, "validate")
    assert code == 0, err
    assert out == "Success! 1 segment and 1 destination are valid.\n"


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def test_changed_since_counts_a_source_git_ignores(workspace: Path) -> None:
    for name in ("cart", "vip"):
        source = f"csv: {{path: ../data/{name}.csv}}"
        write_tree(workspace, {f"segments/{name}.yaml": mics_manifest(name, source)})
        write_tree(workspace, {f"data/{name}.csv": "email_hash\n" + "a" * 64 + "\n"})
    write_tree(workspace, {".gitignore": "data/vip.csv\n.segops/\nout/\n"})
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    git(workspace, "init", "-q")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-qm", "base")
    plan = plan_json(workspace, "--changed-since", "HEAD")
    # Nothing tracked changed, but git cannot tell what the ignored export held at HEAD.
    assert [c["segment"] for c in plan["changes"]] == ["vip"]
