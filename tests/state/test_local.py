"""The local store passes the conformance suite, plus what is specific to files on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from segops.errors import StateError
from segops.state.local import LocalStateStore
from segops.state.model import State
from tests.state import conformance as c


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".segops"


def test_empty_store_reads_none(path: Path) -> None:
    c.check_empty_store_reads_none(lambda: LocalStateStore(path))


def test_write_increments_serial(path: Path) -> None:
    c.check_write_increments_serial_and_keeps_lineage(lambda: LocalStateStore(path))


def test_refuses_other_lineage(path: Path) -> None:
    c.check_refuses_other_lineage(lambda: LocalStateStore(path))


def test_snapshots(path: Path, tmp_path: Path) -> None:
    c.check_snapshots_roundtrip_and_collect(lambda: LocalStateStore(path), tmp_path)


def test_lock(path: Path) -> None:
    c.check_lock_excludes_and_releases(LocalStateStore(path))


def test_lock_across_processes(path: Path) -> None:
    c.check_lock_across_processes(lambda: LocalStateStore(path), path)


def test_unknown_format_version(path: Path) -> None:
    c.check_unknown_format_version_fails_clearly(lambda: LocalStateStore(path), path / "state.json")


def test_every_write_keeps_the_previous_state_as_backup(path: Path) -> None:
    store = LocalStateStore(path)
    first = store.write(State("lin", 0, "0.1"))
    store.write(first)
    backup = json.loads((path / "state.json.backup").read_text())
    assert backup["serial"] == 1
    assert json.loads((path / "state.json").read_text())["serial"] == 2


def test_state_json_has_the_documented_fields(path: Path) -> None:
    store = LocalStateStore(path)
    store.write(State("lin", 0, "0.1", (c.entry("seg.files", "d" * 64, count=7),)))
    data = json.loads((path / "state.json").read_text())
    assert {"format_version", "lineage", "serial", "segops_version", "destinations"} <= data.keys()
    dest = data["destinations"]["seg.files"]
    assert dest["member_count"] == 7
    assert dest["snapshot"]["sha256"] == "d" * 64
    assert len(dest["settings_digest"]) == 64


def test_a_crash_before_rename_leaves_the_old_state(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStateStore(path)
    store.write(State("lin", 0, "0.1"))
    before = (path / "state.json").read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        store.write(State("lin", 0, "0.1", (c.entry("x.y", "e" * 64),)))
    monkeypatch.undo()
    assert (path / "state.json").read_bytes() == before
    state = LocalStateStore(path).read()
    assert state is not None and state.serial == 1


def test_torn_state_file_is_a_clear_error(path: Path) -> None:
    path.mkdir()
    (path / "state.json").write_text('{"format_version": 1, "lin')
    with pytest.raises(StateError, match="state.json: not valid JSON"):
        LocalStateStore(path).read()


def test_unlock_without_lock_is_an_error(path: Path) -> None:
    with pytest.raises(StateError, match="no lock"):
        LocalStateStore(path).unlock("whatever")
