"""The local store passes the conformance suite, plus what is specific to files on disk."""

from __future__ import annotations

import json
import os
import stat
from functools import partial
from pathlib import Path

import pytest

from segops.errors import StateError, StateLockedError
from segops.state.local import LocalStateStore
from segops.state.model import State
from tests.state import conformance as c


class LocalRaw:
    """The conformance suite's raw view of a local store: files under its folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ".segops"


@pytest.fixture
def raw(path: Path) -> LocalRaw:
    return LocalRaw(path)


@pytest.fixture
def make(path: Path) -> c.Factory:
    return lambda: LocalStateStore(path)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    return folder


def test_empty_store_reads_none(make: c.Factory) -> None:
    c.check_empty_store_reads_none(make)


def test_write_increments_serial(make: c.Factory, files: Path) -> None:
    c.check_write_increments_serial_and_keeps_lineage(make, files)


def test_refuses_other_lineage(make: c.Factory) -> None:
    c.check_refuses_other_lineage(make)


def test_snapshots(make: c.Factory, files: Path) -> None:
    c.check_snapshots_roundtrip_and_collect(make, files)


def test_state_edits(make: c.Factory, files: Path) -> None:
    c.check_state_edits_keep_a_backup_and_their_fields(make, files)


def test_unknown_format_version(make: c.Factory, raw: LocalRaw) -> None:
    c.check_unknown_format_version_fails_clearly(make, raw)


def test_version_1_is_upgraded(make: c.Factory, raw: LocalRaw, files: Path) -> None:
    c.check_version_1_is_read_and_upgraded(make, raw, files)


def test_put_snapshot_checks_the_digest(make: c.Factory, files: Path) -> None:
    c.check_put_snapshot_checks_the_digest(make, files)


@pytest.mark.parametrize("damage", sorted(c.SNAPSHOT_DAMAGE))
def test_damaged_snapshot(make: c.Factory, raw: LocalRaw, files: Path, damage: str) -> None:
    c.check_damaged_snapshot_is_refused(make, raw, files, damage)


@pytest.mark.parametrize("edit", sorted(c.STATE_EDITS))
def test_edited_state(make: c.Factory, raw: LocalRaw, files: Path, edit: str) -> None:
    c.check_edited_state_is_refused(make, raw, files, edit)


@pytest.mark.parametrize("damage", sorted(c.STATE_DAMAGE))
def test_damaged_state(make: c.Factory, raw: LocalRaw, files: Path, damage: str) -> None:
    c.check_damaged_state_is_a_clear_error(make, raw, files, damage)


@pytest.mark.parametrize("trace", c.LOST_TRACES)
def test_lost_state(make: c.Factory, raw: LocalRaw, files: Path, trace: str) -> None:
    c.check_lost_state_is_refused(make, raw, files, trace)


def test_first_apply_resumes(make: c.Factory, files: Path) -> None:
    c.check_a_first_apply_that_began_resumes_its_lineage(make, files)


def test_abandon(make: c.Factory, raw: LocalRaw, files: Path) -> None:
    c.check_abandon_sets_traces_aside_and_begins(make, raw, files)


@pytest.mark.parametrize("how", ["missing", "damaged"])
def test_recover(make: c.Factory, raw: LocalRaw, files: Path, how: str) -> None:
    c.check_recover_restores_the_backup(make, raw, files, how)


def test_recover_leaves_a_sound_state(make: c.Factory, files: Path) -> None:
    c.check_recover_leaves_a_sound_state_alone(make, files)


def test_recover_needs_a_backup(make: c.Factory, raw: LocalRaw, files: Path) -> None:
    c.check_recover_needs_a_sound_backup(make, raw, files)


def test_lock(path: Path) -> None:
    c.check_lock_excludes_and_releases(LocalStateStore(path))


def test_lock_across_processes(path: Path) -> None:
    c.check_lock_across_processes(partial(LocalStateStore, path))


@pytest.mark.parametrize("kind", sorted(c.UNREADABLE_LOCKS))
def test_unreadable_lock(make: c.Factory, raw: LocalRaw, kind: str) -> None:
    c.check_an_unreadable_lock_is_named_and_removable(make, raw, kind)


def test_live_holder(make: c.Factory) -> None:
    c.check_a_live_holder_is_only_released_with_force(make)


def test_dead_holder(make: c.Factory, raw: LocalRaw) -> None:
    c.check_a_dead_holder_is_released(make, raw)


def test_lost_lock(make: c.Factory, raw: LocalRaw, files: Path) -> None:
    c.check_a_lost_lock_never_overwrites_a_newer_state(make, raw, files)


def test_lost_lock_on_a_first_apply(make: c.Factory) -> None:
    c.check_a_lost_lock_on_a_first_apply(make)


def test_records(make: c.Factory) -> None:
    c.check_records_compare_and_swap(make)


def test_abandon_keeps_ledgers(make: c.Factory, raw: LocalRaw, files: Path) -> None:
    c.check_abandon_keeps_quota_ledgers(make, raw, files)


def test_moved(make: c.Factory, raw: LocalRaw, files: Path) -> None:
    c.check_a_moved_store_says_where_the_state_went(make, raw, files)


def test_entries(make: c.Factory, tmp_path: Path, files: Path) -> None:
    c.check_entries_export_and_import(make, partial(LocalStateStore, tmp_path / "other"), files)


# -- specific to files on disk -------------------------------------------------------------


def test_every_write_keeps_the_previous_state_as_backup(path: Path) -> None:
    store = LocalStateStore(path)
    first = store.write(State("lin", 0, "0.1"))
    store.write(first)
    backup = json.loads((path / "state.json.backup").read_text())
    assert backup["serial"] == 1
    assert json.loads((path / "state.json").read_text())["serial"] == 2


def test_state_json_has_the_documented_fields(path: Path, files: Path) -> None:
    store = c.begun(lambda: LocalStateStore(path))
    sha = c.stored(store, files, b"seven")
    store.write(State("lin", 0, "0.1", (c.entry("seg.files", sha, count=7),)))
    data = json.loads((path / "state.json").read_text())
    assert {"format_version", "lineage", "serial", "segops_version", "destinations"} <= data.keys()
    assert data["format_version"] == 2 and len(data["digest"]) == 64
    dest = data["destinations"]["seg.files"]
    assert dest["member_count"] == 7
    assert dest["snapshot"]["sha256"] == sha
    assert len(dest["settings_digest"]) == 64 and len(dest["digest"]) == 64


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
        store.write(State("lin", 0, "0.1"))
    monkeypatch.undo()
    assert (path / "state.json").read_bytes() == before
    state = LocalStateStore(path).read()
    assert state is not None and state.serial == 1
    assert [p.name for p in path.iterdir() if p.name.endswith(".tmp")] == []


def test_unlock_without_lock_is_an_error(path: Path) -> None:
    with pytest.raises(StateError, match="no lock"):
        LocalStateStore(path).unlock("whatever")


@pytest.mark.parametrize("fail", ["write", "fsync", "link"])
def test_a_lock_is_never_left_empty(path: Path, monkeypatch: pytest.MonkeyPatch, fail: str) -> None:
    """A failure (or a kill) at any step of taking the lock leaves no lock, or a whole one."""

    def boom(*args: object) -> None:
        raise OSError(5, "killed here")

    monkeypatch.setattr(os, fail, boom)
    with pytest.raises(OSError, match="killed here"):
        LocalStateStore(path).lock("apply")
    monkeypatch.undo()
    assert not (path / "lock.json").exists()
    assert [p.name for p in path.iterdir()] == []
    LocalStateStore(path).lock("apply")


def test_a_file_system_without_hard_links_still_locks(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    held = LocalStateStore(path).lock("apply")
    with pytest.raises(StateLockedError, match=held.id):
        LocalStateStore(path).lock("apply")


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_everything_is_private_whatever_the_umask(path: Path, files: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        store = LocalStateStore(path)
        lock = store.lock("apply")
        store.begin(State("lin", 0, "0.1"))
        sha = c.stored(store, files, b"members")
        state = store.write(State("lin", 0, "0.1", (c.entry("a.x", sha),)))
        store.write(state)
    finally:
        os.umask(old)
    modes = {
        str(p.relative_to(path.parent)): stat.S_IMODE(p.stat().st_mode)
        for p in [path, *path.rglob("*")]
    }
    assert modes == {
        ".segops": 0o700,
        ".segops/lock.json": 0o600,
        ".segops/snapshots": 0o700,
        f".segops/snapshots/{sha}.parquet": 0o600,
        f".segops/snapshots/{sha}.blake3": 0o600,
        ".segops/state.json": 0o600,
        ".segops/state.json.backup": 0o600,
    }
    store.unlock(lock.id)


def test_the_first_apply_record_is_private(path: Path) -> None:
    old = os.umask(0)
    try:
        LocalStateStore(path).begin(State("first", 0, "0.1"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((path / "new-state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_an_existing_open_folder_is_made_private(path: Path) -> None:
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    LocalStateStore(path).write(State("lin", 0, "0.1"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((path / "state.json").stat().st_mode) == 0o600


def test_a_snapshot_that_is_a_symlink_is_refused(path: Path, files: Path) -> None:
    store = c.begun(lambda: LocalStateStore(path))
    sha = c.stored(store, files, b"members")
    store.write(State("lin", 0, "0.1", (c.entry("a.x", sha),)))
    target = path / "snapshots" / f"{sha}.parquet"
    moved = files / "elsewhere.parquet"
    target.rename(moved)
    target.symlink_to(moved)  # same bytes, but not the store's own file
    with pytest.raises(StateError, match="not a regular file"):
        LocalStateStore(path).snapshot_path(sha)


def _blake3_of(data: bytes) -> str:
    import blake3

    return str(blake3.blake3(data).hexdigest())


def test_a_stored_snapshot_gets_its_blake3_digest_and_loses_it_when_collected(
    path: Path, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = c.begun(lambda: LocalStateStore(path))
    sha = c.stored(store, files, b"members")
    digest_file = path / "snapshots" / f"{sha}.blake3"
    assert digest_file.read_text() == _blake3_of(b"members")
    with monkeypatch.context() as patched:  # the digest file vouches: no sha256 pass
        patched.setattr("segops.state.snapshots._Digests", None)
        assert LocalStateStore(path).snapshot_path(sha).read_bytes() == b"members"
    store.write(State("lin", 0, "0.1", (c.entry("a.x", sha),)))
    other = c.stored(store, files, b"others")
    store.write(State("lin", 0, "0.1", (c.entry("a.x", other),)))
    store.write(State("lin", 0, "0.1", (c.entry("a.x", other),)))  # the backup drops `sha`
    assert not digest_file.exists() and not (path / "snapshots" / f"{sha}.parquet").exists()
    assert (path / "snapshots" / f"{other}.blake3").exists()


def test_a_damaged_snapshot_is_refused_though_its_blake3_digest_is_intact(
    path: Path, files: Path
) -> None:
    store = c.begun(lambda: LocalStateStore(path))
    sha = c.stored(store, files, b"members")
    (path / "snapshots" / f"{sha}.parquet").write_bytes(b"memberz")
    with pytest.raises(StateError, match="do not match its digest"):
        LocalStateStore(path).snapshot_path(sha)


@pytest.mark.parametrize("digest", [None, "not a digest", "0" * 64])
def test_a_missing_or_wrong_blake3_digest_falls_back_to_sha256(
    path: Path, files: Path, digest: str | None
) -> None:
    """Snapshots stored by earlier versions have no digest file: they are checked by sha256;
    a command that only reads the state writes none, the next store of the snapshot does."""
    store = c.begun(lambda: LocalStateStore(path))
    sha = c.stored(store, files, b"members")
    digest_file = path / "snapshots" / f"{sha}.blake3"
    if digest is None:
        digest_file.unlink()
    else:
        digest_file.write_text(digest)
    reader = LocalStateStore(path)
    assert reader.snapshot_path(sha).read_bytes() == b"members"
    assert digest_file.exists() is (digest is not None)
    (path / "snapshots" / f"{sha}.parquet").write_bytes(b"memberz")  # damaged as well
    with pytest.raises(StateError, match="do not match its digest"):
        LocalStateStore(path).snapshot_path(sha)
    assert c.stored(store, files, b"members") == sha  # stored again: repaired, digest recorded
    assert digest_file.read_text() == _blake3_of(b"members")


def test_temporary_files_of_killed_runs_are_removed_at_lock(path: Path) -> None:
    path.mkdir()
    dead = path / ".state.json.999999999.0123abcd.tmp"
    alive = path / f".state.json.{os.getpid()}.0123abcd.tmp"
    dead.write_text("partial")
    alive.write_text("being written")
    LocalStateStore(path).lock("apply")
    assert not dead.exists() and alive.exists()
