"""Helpers for tests of the S3 state: AWS credentials the standard way, workspaces whose
state is on the test S3 server, and fresh working copies (what a CI runner starts from)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segops.cli import app
from tests.s3server import REGION, S3Server

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "manifests"
# Credentials the standard AWS way; the configuration files point nowhere, so that the
# developer's own profile is never used, and no instance role is looked up.
ACCESS_KEY, SECRET_KEY = "AKIATESTSEGOPS0001", "s3cr3t-CANARY-8c1f"


def aws_env(tmp_path: Path) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def set_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(tmp_path).items():
        monkeypatch.setenv(name, value)


def s3_state(bucket: str, prefix: str, endpoint_url: str) -> str:
    """Return the `state:` block of a segops.yaml whose state is on the test server."""
    return (
        f"state:\n  backend: s3\n  bucket: {bucket}\n  prefix: {prefix}\n"
        f"  region: {REGION}\n  endpoint_url: {endpoint_url}\n"
    )


def with_state(segops_yaml: str, state: str) -> str:
    """Return `segops_yaml` with its `state:` block replaced (or added)."""
    without = re.sub(r"^state:\n(?:[ #].*\n)*", "", segops_yaml, flags=re.MULTILINE)
    return without.replace("version: 1\n", f"version: 1\n{state}", 1)


def fresh_copy(source: Path, dest: Path) -> Path:
    """Copy the workspace files of `source` (never its state, outputs or plans) to `dest`."""
    ignore = shutil.ignore_patterns(".segops", "out", "*.segplan")
    shutil.copytree(source, dest, ignore=ignore)
    return dest


def bundled_copy(dest: Path, state: str) -> Path:
    """Copy the bundled example workspace to `dest`, its state moved to `state`."""
    fresh_copy(BUNDLED, dest)
    config = dest / "segops.yaml"
    config.write_text(with_state(config.read_text(), state))
    return dest


def segops(root: Path, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process on workspace `root`; return (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def objects(server: S3Server, bucket: str, prefix: str) -> dict[str, bytes]:
    """Return every object under `prefix/` by name, with its bytes."""
    client = server.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", ())]
    cut = len(prefix) + 1
    return {k[cut:]: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
