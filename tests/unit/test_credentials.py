"""Secrets come from the environment variables a connection names, and never show."""

from __future__ import annotations

import pytest

from segops.config.credentials import resolve
from segops.errors import ManifestError
from segops.model import Connection, Platform

MICS = Connection(
    "mics", Platform.MEDIARITHMICS, Platform.MEDIARITHMICS, (("token_env", "MICS_TOKEN"),)
)
MOE = Connection(
    "moe",
    Platform.MOENGAGE,
    Platform.MOENGAGE,
    (("api_key_env", "MOE_KEY"), ("workspace_id_env", "MOE_WS")),
)


def test_values_are_read_from_the_named_variables() -> None:
    found = resolve([MICS, MOE], {"MICS_TOKEN": "t0k", "MOE_KEY": "k3y", "MOE_WS": "ws1"})
    assert found["mics"]["token_env"] == "t0k"
    assert found["moe"]["api_key_env"] == "k3y"
    assert "t0k" not in repr(found) and "k3y" not in repr(found)


def test_every_missing_variable_is_named_with_its_connection() -> None:
    with pytest.raises(ManifestError) as caught:
        resolve([MICS, MOE], {"MOE_WS": "ws1", "MICS_TOKEN": ""})
    text = str(caught.value)
    assert (
        "connections.mics.token_env: environment variable MICS_TOKEN (API token) is not set" in text
    )
    assert "connections.moe.api_key_env: environment variable MOE_KEY" in text
    assert "ws1" not in text


def test_files_connections_need_nothing() -> None:
    files = Connection("f", Platform.FILES, Platform.MEDIARITHMICS, (("path", "out"),))
    assert dict(resolve([files], {})["f"]) == {}
