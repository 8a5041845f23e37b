"""The sources tests take their AWS credentials the standard way (the servers are in
tests/conftest.py: `pg` and `s3`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3state import set_aws_env


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_aws_env(monkeypatch, tmp_path)
