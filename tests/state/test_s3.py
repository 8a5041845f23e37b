"""The S3 store passes the conformance suite against a real S3-compatible server, plus what
is specific to S3: the objects' layout, the ETag compare-and-swap, and clear errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from emulators.s3 import check_credentials
from segops.errors import StateError, StateLockedError
from segops.state.model import State
from segops.state.s3 import S3StateStore
from segops.state.s3io import S3Location
from tests.s3server import REGION, S3Server, s3_server
from tests.s3state import SECRET_KEY, set_aws_env
from tests.state import conformance as c

BUCKET = "segops-state"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_aws_env(monkeypatch, tmp_path)


class S3Raw:
    """The conformance suite's raw view of an S3 store: objects under its prefix."""

    def __init__(self, server: S3Server, prefix: str) -> None:
        self.client = server.client()
        self.prefix = prefix

    def get(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix}/{name}")["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=f"{self.prefix}/{name}", Body=data)

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=BUCKET, Key=f"{self.prefix}/{name}")

    def names(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"{self.prefix}/"
        )
        cut = len(self.prefix) + 1
        return sorted(o["Key"][cut:] for p in pages for o in p.get("Contents", ()))


@pytest.fixture
def prefix() -> str:
    return f"ws/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def location(server: S3Server, prefix: str) -> S3Location:
    return S3Location(BUCKET, prefix, REGION, server.endpoint_url)


@pytest.fixture
def raw(server: S3Server, prefix: str) -> S3Raw:
    return S3Raw(server, prefix)


@pytest.fixture
def make(location: S3Location, tmp_path: Path) -> c.Factory:
    return partial(S3StateStore, location, tmp_path / "work")


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


def test_unknown_format_version(make: c.Factory, raw: S3Raw) -> None:
    c.check_unknown_format_version_fails_clearly(make, raw)


def test_version_1_is_upgraded(make: c.Factory, raw: S3Raw, files: Path) -> None:
    c.check_version_1_is_read_and_upgraded(make, raw, files)


def test_put_snapshot_checks_the_digest(make: c.Factory, files: Path) -> None:
    c.check_put_snapshot_checks_the_digest(make, files)


@pytest.mark.parametrize("damage", sorted(c.SNAPSHOT_DAMAGE))
def test_damaged_snapshot(make: c.Factory, raw: S3Raw, files: Path, damage: str) -> None:
    c.check_damaged_snapshot_is_refused(make, raw, files, damage)


@pytest.mark.parametrize("edit", sorted(c.STATE_EDITS))
def test_edited_state(make: c.Factory, raw: S3Raw, files: Path, edit: str) -> None:
    c.check_edited_state_is_refused(make, raw, files, edit)


@pytest.mark.parametrize("damage", sorted(c.STATE_DAMAGE))
def test_damaged_state(make: c.Factory, raw: S3Raw, files: Path, damage: str) -> None:
    c.check_damaged_state_is_a_clear_error(make, raw, files, damage)


@pytest.mark.parametrize("trace", c.LOST_TRACES)
def test_lost_state(make: c.Factory, raw: S3Raw, files: Path, trace: str) -> None:
    c.check_lost_state_is_refused(make, raw, files, trace)


def test_first_apply_resumes(make: c.Factory, files: Path) -> None:
    c.check_a_first_apply_that_began_resumes_its_lineage(make, files)


def test_abandon(make: c.Factory, raw: S3Raw, files: Path) -> None:
    c.check_abandon_sets_traces_aside_and_begins(make, raw, files)


@pytest.mark.parametrize("how", ["missing", "damaged"])
def test_recover(make: c.Factory, raw: S3Raw, files: Path, how: str) -> None:
    c.check_recover_restores_the_backup(make, raw, files, how)


def test_recover_leaves_a_sound_state(make: c.Factory, files: Path) -> None:
    c.check_recover_leaves_a_sound_state_alone(make, files)


def test_recover_needs_a_backup(make: c.Factory, raw: S3Raw, files: Path) -> None:
    c.check_recover_needs_a_sound_backup(make, raw, files)


def test_lock(make: c.Factory) -> None:
    c.check_lock_excludes_and_releases(make())


def test_lock_across_processes(make: c.Factory) -> None:
    c.check_lock_across_processes(make)


@pytest.mark.parametrize("kind", sorted(c.UNREADABLE_LOCKS))
def test_unreadable_lock(make: c.Factory, raw: S3Raw, kind: str) -> None:
    c.check_an_unreadable_lock_is_named_and_removable(make, raw, kind)


def test_live_holder(make: c.Factory) -> None:
    c.check_a_live_holder_is_only_released_with_force(make)


def test_dead_holder(make: c.Factory, raw: S3Raw) -> None:
    c.check_a_dead_holder_is_released(make, raw)


def test_lost_lock(make: c.Factory, raw: S3Raw, files: Path) -> None:
    c.check_a_lost_lock_never_overwrites_a_newer_state(make, raw, files)


def test_lost_lock_on_a_first_apply(make: c.Factory) -> None:
    c.check_a_lost_lock_on_a_first_apply(make)


def test_records(make: c.Factory) -> None:
    c.check_records_compare_and_swap(make)


def test_abandon_keeps_ledgers(make: c.Factory, raw: S3Raw, files: Path) -> None:
    c.check_abandon_keeps_quota_ledgers(make, raw, files)


def test_moved(make: c.Factory, raw: S3Raw, files: Path) -> None:
    c.check_a_moved_store_says_where_the_state_went(make, raw, files)


def test_entries(make: c.Factory, location: S3Location, tmp_path: Path, files: Path) -> None:
    other = S3Location(BUCKET, f"{location.prefix}-copy", REGION, location.endpoint_url)
    c.check_entries_export_and_import(make, partial(S3StateStore, other, tmp_path / "w2"), files)


# -- specific to S3 ----------------------------------------------------------------------------


def test_objects_follow_the_local_layout(make: c.Factory, raw: S3Raw, files: Path) -> None:
    _, current = c.two_writes(make, files)
    (sha,) = {d.snapshot.sha256 for d in current.destinations} - {
        c.hashlib.sha256(b"two").hexdigest()
    }
    names = raw.names()
    assert {"state.json", "state.json.backup", f"snapshots/{sha}.parquet"} <= set(names)
    assert json.loads(raw.get("state.json") or b"")["serial"] == 2
    assert json.loads(raw.get("state.json.backup") or b"")["serial"] == 1
    assert "new-state.json" not in names  # the first apply is over


def test_the_lock_object_holds_who_and_is_created_only_once(
    make: c.Factory, raw: S3Raw, server: S3Server, prefix: str
) -> None:
    held = make().lock("apply")
    data = json.loads(raw.get("lock.json") or b"")
    assert data["id"] == held.id and {"operation", "who", "pid", "created"} <= data.keys()
    with pytest.raises(StateLockedError, match=f"force-unlock {held.id}"):
        make().lock("apply")
    assert json.loads(raw.get("lock.json") or b"")["id"] == held.id  # not replaced


def test_force_unlock_removes_exactly_the_lock_it_read(
    make: c.Factory, raw: S3Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between reading the lock and deleting it, another run takes a new one: it stays."""
    old = make().lock("apply")
    store = make()
    original = store._lock._read  # type: ignore[attr-defined]

    def swapped() -> object:
        got = original()
        data = json.loads(raw.get("lock.json") or b"")
        raw.put("lock.json", json.dumps({**data, "id": "newer-run"}).encode())
        return got

    monkeypatch.setattr(store._lock, "_read", swapped)  # type: ignore[attr-defined]
    with pytest.raises(StateError, match="changed while it was being released"):
        store.force_unlock(old.id, force=True)
    assert json.loads(raw.get("lock.json") or b"")["id"] == "newer-run"


def test_reads_download_state_json_only_when_it_changed(
    make: c.Factory, raw: S3Raw, files: Path
) -> None:
    store = make()
    first = store.write(State("lin", 0, "0.1"))
    assert store.read() == first
    edited = json.loads(raw.get("state.json") or b"")
    edited["serial"] = 7
    raw.put("state.json", json.dumps(edited).encode())  # a new ETag: read again, and checked
    with pytest.raises(StateError, match="digest"):
        store.read()


def test_snapshots_are_downloaded_to_the_scratch_folder(
    make: c.Factory, files: Path, tmp_path: Path
) -> None:
    _, current = c.two_writes(make, files)
    sha = current.destinations[0].snapshot.sha256
    path = make().snapshot_path(sha)
    assert path.parent == tmp_path / "work" / "state-snapshots"
    assert c.hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


# -- unreachable, refused, missing ----------------------------------------------------------


def test_nothing_listening_names_the_endpoint(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}"
    store = S3StateStore(S3Location(BUCKET, "p", REGION, url), tmp_path)
    with pytest.raises(StateError, match="segops.yaml: state.endpoint_url: cannot reach S3 at"):
        store.read()


MISSING = "segops.yaml: state.bucket: the bucket 'no-such-bucket' does not exist"


def test_a_missing_bucket_names_state_bucket(server: S3Server, tmp_path: Path) -> None:
    store = S3StateStore(S3Location("no-such-bucket", "p", REGION, server.endpoint_url), tmp_path)
    for use in (lambda: store.read(), lambda: store.lock("apply")):
        with pytest.raises(
            StateError,
            match="segops.yaml: state.bucket: the bucket 'no-such-bucket' does not exist",
        ):
            use()


def test_refused_credentials_name_state_bucket(
    server: S3Server, location: S3Location, tmp_path: Path
) -> None:
    check_credentials(server.endpoint_url, True)
    try:
        store = S3StateStore(location, tmp_path)
        with pytest.raises(
            StateError, match="state.bucket: S3 refused the AWS credentials"
        ) as info:
            store.lock("apply")
    finally:
        check_credentials(server.endpoint_url, False)
    assert SECRET_KEY not in str(info.value)  # secrets are never shown


def test_no_credentials_at_all(
    location: S3Location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StateError, match="no AWS credentials found"):
        S3StateStore(location, tmp_path).read()
