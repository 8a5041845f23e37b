"""The behaviour every state store must have; each store's test module runs it."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from segops.errors import StateError, StateLockedError
from segops.model import KeyEncoding, Platform, SnapshotRef
from segops.state import Locker, StateStore
from segops.state.model import DestinationState, State

Factory = Callable[[], StateStore]


def entry(address: str, sha: str, count: int = 3) -> DestinationState:
    return DestinationState(
        address=address,
        segment=address.split(".")[0],
        connection="files",
        platform=Platform.MEDIARITHMICS,
        settings=(("connection", "files"), ("datamart_id", "1")),
        snapshot=SnapshotRef(sha, count, KeyEncoding.HEX),
    )


def snapshot_file(tmp: Path, content: bytes) -> Path:
    path = tmp / f"snap-{len(content)}.parquet"
    path.write_bytes(content)
    return path


def check_empty_store_reads_none(make: Factory) -> None:
    assert make().read() is None


def check_write_increments_serial_and_keeps_lineage(make: Factory) -> None:
    store = make()
    first = store.write(State("lin-1", 0, "0.1", (entry("a.x", "0" * 64),)))
    second = store.write(first.with_destination(entry("b.x", "1" * 64)))
    assert (first.serial, second.serial) == (1, 2)
    again = make().read()
    assert again is not None
    assert again.lineage == "lin-1" and again.serial == 2
    assert [d.address for d in again.destinations] == ["a.x", "b.x"]


def check_refuses_other_lineage(make: Factory) -> None:
    store = make()
    store.write(State("lin-1", 0, "0.1"))
    with pytest.raises(StateError, match="lineage"):
        store.write(State("lin-2", 0, "0.1"))


def check_snapshots_roundtrip_and_collect(make: Factory, tmp: Path) -> None:
    store = make()
    store.put_snapshot(snapshot_file(tmp, b"one"), "a" * 64)
    store.put_snapshot(snapshot_file(tmp, b"two!"), "b" * 64)
    state = store.write(State("lin", 0, "0.1", (entry("s.x", "a" * 64),)))
    assert store.snapshot_path("a" * 64).read_bytes() == b"one"
    # b is referenced by neither state.json nor its backup: it is collected.
    with pytest.raises(StateError, match="missing"):
        store.snapshot_path("b" * 64)
    store.put_snapshot(snapshot_file(tmp, b"three"), "c" * 64)
    store.write(state.with_destination(entry("s.x", "c" * 64)))
    # a is still referenced by the backup (the previous state), c by the current one.
    assert store.snapshot_path("a" * 64).read_bytes() == b"one"
    assert store.snapshot_path("c" * 64).read_bytes() == b"three"


def check_lock_excludes_and_releases(locker: Locker) -> None:
    held = locker.lock("apply")
    with pytest.raises(StateLockedError, match=held.id):
        locker.lock("apply")
    with pytest.raises(StateError):
        locker.unlock("not-the-id")
    locker.unlock(held.id)
    locker.unlock(locker.lock("apply").id)


def _take_lock(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from segops.state.local import LocalStateStore

    try:
        queue.put(LocalStateStore(Path(path)).lock("apply").id)
    except StateLockedError:
        queue.put("locked")


def check_lock_across_processes(make_locker: Callable[[], Locker], path: Path) -> None:
    held = make_locker().lock("apply")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_take_lock, args=(str(path), queue))
    proc.start()
    proc.join(60)
    assert queue.get(timeout=5) == "locked"
    make_locker().unlock(held.id)


def check_unknown_format_version_fails_clearly(make: Factory, state_file: Path) -> None:
    store = make()
    store.write(State("lin", 0, "0.1"))
    data = json.loads(state_file.read_text())
    data["format_version"] = 99
    state_file.write_text(json.dumps(data))
    with pytest.raises(StateError, match="format_version 99"):
        make().read()
