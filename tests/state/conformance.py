"""The behaviour every state store must have; each store's test module runs it.

A store's test module gives a factory of stores and a `Raw` view of what the store keeps
(by the local layout's names: "state.json", "snapshots/<sha>.parquet", "lock.json"...),
through which these checks damage it as a disk, a person or an attacker would. A factory
given to `check_lock_across_processes` must pickle (a `functools.partial` of the store
class), since the other process builds its own store with it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from segops.errors import LostStateError, StateError, StateLockedError
from segops.model import KeyEncoding, Platform, SnapshotRef
from segops.state import Locker, StateBackend, edits
from segops.state.model import DestinationState, LastWrite, State

Store = StateBackend


Factory = Callable[[], Store]


class Raw(Protocol):
    def get(self, name: str) -> bytes | None: ...

    def put(self, name: str, data: bytes) -> None: ...

    def delete(self, name: str) -> None: ...

    def names(self) -> list[str]: ...


RECOVER = "segops state recover"


def entry(address: str, sha: str, count: int = 3) -> DestinationState:
    return DestinationState(
        address=address,
        segment=address.split(".")[0],
        connection="files",
        platform=Platform.MEDIARITHMICS,
        settings=(("connection", "files"), ("datamart_id", "1")),
        snapshot=SnapshotRef(sha, count, KeyEncoding.HEX),
    )


def snapshot_file(tmp: Path, content: bytes) -> tuple[Path, str]:
    """Write a snapshot file; return it with its digest."""
    sha = hashlib.sha256(content).hexdigest()
    path = tmp / f"snap-{sha[:8]}.parquet"
    path.write_bytes(content)
    return path, sha


def stored(store: Store, tmp: Path, content: bytes) -> str:
    """Put a snapshot with `content` into `store`; return its digest."""
    path, sha = snapshot_file(tmp, content)
    store.put_snapshot(path, sha)
    return sha


def begun(make: Factory, lineage: str = "lin") -> Store:
    """Return a store where a first apply of `lineage` began (as apply does before sending)."""
    store = make()
    store.begin(State(lineage, 0, "0.1"))
    return store


def two_writes(make: Factory, tmp: Path) -> tuple[State, State]:
    """Write two states (the second is current, the first its backup); return them."""
    store = begun(make)
    one, two = stored(store, tmp, b"one"), stored(store, tmp, b"two")
    first = store.write(State("lin", 0, "0.1", (entry("a.x", one), entry("b.x", two))))
    three = stored(store, tmp, b"three")
    second = store.write(first.with_destination(entry("a.x", three, count=4)))
    return first, second


def edit_state(raw: Raw, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(raw.get("state.json") or b"{}")
    edit(data)
    raw.put("state.json", json.dumps(data).encode())


# -- reading and writing ----------------------------------------------------------------


def check_empty_store_reads_none(make: Factory) -> None:
    assert make().read() is None


def check_write_increments_serial_and_keeps_lineage(make: Factory, tmp: Path) -> None:
    store = begun(make, "lin-1")
    a, b = stored(store, tmp, b"a"), stored(store, tmp, b"b")
    first = store.write(State("lin-1", 0, "0.1", (entry("a.x", a),)))
    second = store.write(first.with_destination(entry("b.x", b)))
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
    store = begun(make)
    a, b = stored(store, tmp, b"one"), stored(store, tmp, b"two!")
    state = store.write(State("lin", 0, "0.1", (entry("s.x", a),)))
    assert store.snapshot_path(a).read_bytes() == b"one"
    # b is referenced by neither state.json nor its backup: it is collected.
    with pytest.raises(StateError, match="missing"):
        store.snapshot_path(b)
    c = stored(store, tmp, b"three")
    store.write(state.with_destination(entry("s.x", c)))
    # a is still referenced by the backup (the previous state), c by the current one.
    assert store.snapshot_path(a).read_bytes() == b"one"
    assert store.snapshot_path(c).read_bytes() == b"three"


def check_state_edits_keep_a_backup_and_their_fields(make: Factory, tmp: Path) -> None:
    """`state rm`, `state mv` and `import` are ordinary writes: the store keeps a backup of
    the state they replace, and what they record (via, last write, unconfirmed) reads back."""
    store = begun(make)
    a, b = stored(store, tmp, b"a"), stored(store, tmp, b"b")
    last = LastWrite("run-000001", "apply", "2026-01-01T00:00:00+00:00")
    rich = replace(entry("a.x", a), via="files", unconfirmed=True, last=last)
    first = store.write(State("lin", 0, "0.1", (rich, entry("b.x", b))))
    lock = store.lock("state mv")
    moved = store.write(edits.move(store.read(), "a.x", "c.y", "2026-01-02T00:00:00+00:00"))
    forgotten = store.write(edits.forget(moved, ["b.x"]))
    store.unlock(lock.id)
    again = make().read()
    assert again is not None and again.serial == first.serial + 2 == forgotten.serial
    (kept,) = again.destinations
    assert (kept.address, kept.segment, kept.via, kept.unconfirmed) == ("c.y", "c", "files", True)
    assert kept.last == LastWrite("moved from a.x", "state mv", "2026-01-02T00:00:00+00:00")
    assert dict(again.resources) == {"forgotten:b.x": "3"}
    assert store.snapshot_path(a).read_bytes() == b"a"
    # The backup is the state before the last edit: recover brings b.x back.
    recovered = make().recover(force=True)
    assert [d.address for d in recovered.destinations] == ["b.x", "c.y"]
    assert store.snapshot_path(b).read_bytes() == b"b"


def check_unknown_format_version_fails_clearly(make: Factory, raw: Raw) -> None:
    make().write(State("lin", 0, "0.1"))
    edit_state(raw, lambda d: d.update(format_version=99))
    with pytest.raises(StateError, match="format_version 99"):
        make().read()


def check_version_1_is_read_and_upgraded(make: Factory, raw: Raw, tmp: Path) -> None:
    store = begun(make)
    sha = stored(store, tmp, b"v1")
    store.write(State("lin", 0, "0.1", (entry("a.x", sha, count=9),)))

    def as_version_1(data: dict[str, Any]) -> None:
        data.update(format_version=1)
        del data["digest"]
        for item in data["destinations"].values():
            del item["digest"]

    edit_state(raw, as_version_1)
    state = make().read()
    assert state is not None and state.get("a.x") is not None
    assert make().write(state).serial == 2
    assert json.loads(raw.get("state.json") or b"")["format_version"] == 2


# -- verified on read ---------------------------------------------------------------------


def check_put_snapshot_checks_the_digest(make: Factory, tmp: Path) -> None:
    path, _ = snapshot_file(tmp, b"content")
    with pytest.raises(StateError, match="digest"):
        make().put_snapshot(path, hashlib.sha256(b"other").hexdigest())


SNAPSHOT_DAMAGE: dict[str, Callable[[bytes], bytes | None]] = {
    "flipped-byte": lambda b: bytes([b[0] ^ 1]) + b[1:],
    "truncated": lambda b: b[:-1],
    "replaced": lambda b: b"another valid snapshot",
    "emptied": lambda b: b"",
    "deleted": lambda b: None,
}


def check_damaged_snapshot_is_refused(make: Factory, raw: Raw, tmp: Path, damage: str) -> None:
    _, current = two_writes(make, tmp)
    sha = current.destinations[0].snapshot.sha256
    name = f"snapshots/{sha}.parquet"
    changed = SNAPSHOT_DAMAGE[damage](raw.get(name) or b"")
    if changed is None:
        raw.delete(name)
    else:
        raw.put(name, changed)
    with pytest.raises(StateError, match="missing|digest") as info:
        make().snapshot_path(sha)
    assert RECOVER in str(info.value)


STATE_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    # state.json pointing at another destination's snapshot
    "other-snapshot": lambda d: d["destinations"]["a.x"]["snapshot"].update(
        sha256=d["destinations"]["b.x"]["snapshot"]["sha256"]
    ),
    "member-count": lambda d: d["destinations"]["a.x"].update(member_count=0),
    "settings": lambda d: d["destinations"]["a.x"]["settings"].update(datamart_id="2"),
    "moved-entry": lambda d: d["destinations"].update({"c.x": d["destinations"].pop("a.x")}),
    "swapped-entries": lambda d: d.update(
        destinations={"a.x": d["destinations"]["b.x"], "b.x": d["destinations"]["a.x"]}
    ),
    "lineage": lambda d: d.update(lineage="another"),
    "serial": lambda d: d.update(serial=99),
    "resources": lambda d: d["resources"].update(k="v"),
    "dropped-entry": lambda d: d["destinations"].pop("b.x"),
}


def check_edited_state_is_refused(make: Factory, raw: Raw, tmp: Path, edit: str) -> None:
    two_writes(make, tmp)
    edit_state(raw, STATE_EDITS[edit])
    with pytest.raises(StateError, match="digest") as info:
        make().read()
    assert RECOVER in str(info.value)


STATE_DAMAGE: dict[str, bytes] = {
    "not-utf8": b'{"format_version": 2, "lineage": "\xff\xfe"}',
    "torn": b'{"format_version": 2, "lin',
    "not-an-object": b"[1, 2, 3]",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "empty": b"",
    "wrong-types": b'{"format_version": 2, "destinations": [], "digest": 1}',
}


def check_damaged_state_is_a_clear_error(make: Factory, raw: Raw, tmp: Path, damage: str) -> None:
    two_writes(make, tmp)
    raw.put("state.json", STATE_DAMAGE[damage])
    with pytest.raises(StateError) as info:
        make().read()
    assert RECOVER in str(info.value)


# -- never started afresh --------------------------------------------------------------------

LOST_TRACES = ("state.json.backup", "snapshots", "journal.jsonl", "moengage-ledger-x.json")


def check_lost_state_is_refused(make: Factory, raw: Raw, tmp: Path, trace: str) -> None:
    """state.json is gone; any one trace of it is enough to refuse starting afresh."""
    _, current = two_writes(make, tmp)
    keep = {n for n in raw.names() if n == trace or n.startswith(f"{trace}/")}
    if trace in ("journal.jsonl", "moengage-ledger-x.json"):
        raw.put(trace, b"")
        keep = {trace}
    for name in raw.names():
        if name not in keep:
            raw.delete(name)
    store = make()
    with pytest.raises(LostStateError) as info:
        store.read()
    assert trace.split("/")[0] in str(info.value) and "--allow-new-state" in str(info.value)
    with pytest.raises(LostStateError):
        store.write(State("new-lineage", 0, "0.1"))
    assert (trace == "state.json.backup") == (RECOVER in str(info.value))


def check_a_first_apply_that_began_resumes_its_lineage(make: Factory, tmp: Path) -> None:
    store = make()
    begun = store.begin(State("first", 0, "0.1"))
    assert (begun.lineage, begun.serial) == ("first", 0)
    sha = stored(store, tmp, b"sent before the kill")
    resumed = make().read()  # a new process, after a kill
    assert resumed is not None and (resumed.lineage, resumed.serial) == ("first", 0)
    written = make().write(State("first", 0, "0.1", (entry("a.x", sha),)))
    assert written.serial == 1
    with pytest.raises(StateError, match="lineage"):
        make().write(State("other", 0, "0.1"))
    with pytest.raises(StateError):
        make().begin(State("again", 0, "0.1"))


def check_abandon_sets_traces_aside_and_begins(make: Factory, raw: Raw, tmp: Path) -> None:
    two_writes(make, tmp)
    backup = raw.get("state.json.backup")
    raw.delete("state.json")
    store = make()
    with pytest.raises(LostStateError):
        store.read()
    begun = store.abandon(State("fresh", 0, "0.1"))
    assert (begun.lineage, begun.serial) == ("fresh", 0)
    again = make().read()
    assert again is not None and again.lineage == "fresh"
    kept = [n for n in raw.names() if n.startswith("abandoned/")]
    assert any(n.endswith("state.json.backup") and raw.get(n) == backup for n in kept)
    assert any("/snapshots/" in n for n in kept)
    assert make().write(State("fresh", 0, "0.1")).serial == 1


def check_recover_restores_the_backup(make: Factory, raw: Raw, tmp: Path, how: str) -> None:
    first, _ = two_writes(make, tmp)
    if how == "missing":
        raw.delete("state.json")
    else:
        raw.put("state.json", b"\x00\x00 damaged")
    recovered = make().recover()
    assert recovered.destinations == first.destinations
    # Past the lost serial: no serial ever names two different states.
    assert (recovered.lineage, recovered.serial) == (first.lineage, first.serial + 2)
    state = make().read()
    assert state is not None and state.destinations == first.destinations
    if how == "damaged":
        assert any(n.startswith("state.json.damaged-") for n in raw.names())


def check_recover_leaves_a_sound_state_alone(make: Factory, tmp: Path) -> None:
    first, second = two_writes(make, tmp)
    with pytest.raises(StateError, match="--force"):
        make().recover()
    state = make().read()
    assert state is not None and state.serial == second.serial
    assert make().recover(force=True).destinations == first.destinations


def check_recover_needs_a_sound_backup(make: Factory, raw: Raw, tmp: Path) -> None:
    two_writes(make, tmp)
    raw.delete("state.json")
    raw.put("state.json.backup", b"{}")
    with pytest.raises(StateError):
        make().recover()
    raw.delete("state.json.backup")
    with pytest.raises(StateError, match="no backup"):
        make().recover()


# -- locks -----------------------------------------------------------------------------------


def check_lock_excludes_and_releases(locker: Locker) -> None:
    held = locker.lock("apply")
    with pytest.raises(StateLockedError, match=held.id):
        locker.lock("apply")
    with pytest.raises(StateError):
        locker.unlock("not-the-id")
    locker.unlock(held.id)
    locker.unlock(locker.lock("apply").id)


def _take_lock(make: Factory, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        queue.put(make().lock("apply").id)
    except StateLockedError as exc:
        queue.put(str(exc))


def check_lock_across_processes(make: Factory) -> None:
    """Another process fails at once, naming the holder; once released, it gets the lock."""
    held = make().lock("apply")
    ctx = multiprocessing.get_context("spawn")
    for expected in ("locked", "free"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_take_lock, args=(make, queue))
        proc.start()
        proc.join(60)
        got = queue.get(timeout=5)
        if expected == "locked":
            assert f"Lock ID:   {held.id}" in got and f"PID:       {os.getpid()}" in got
            make().unlock(held.id)
        else:
            make().force_unlock(got)  # the other process is gone: its lock is stale


UNREADABLE_LOCKS = {"empty": b"", "torn": b'{"id": "ab', "not-utf8": b"\xff", "list": b"[]"}


def check_an_unreadable_lock_is_named_and_removable(make: Factory, raw: Raw, kind: str) -> None:
    raw.put("lock.json", UNREADABLE_LOCKS[kind])
    store = make()
    with pytest.raises(StateLockedError, match="force-unlock unreadable-") as info:
        store.lock("apply")
    name = str(info.value).rsplit(" ", 1)[-1]
    with pytest.raises(StateError, match="held with ID"):
        store.force_unlock("unreadable-000000000000")
    store.force_unlock(name)
    store.unlock(store.lock("apply").id)


def check_a_live_holder_is_only_released_with_force(make: Factory) -> None:
    held = make().lock("apply")  # this process: alive, on this machine
    with pytest.raises(StateError, match="still running") as info:
        make().force_unlock(held.id)
    assert "--force" in str(info.value)
    make().force_unlock(held.id, force=True)
    make().unlock(make().lock("apply").id)


def check_a_dead_holder_is_released(make: Factory, raw: Raw) -> None:
    held = make().lock("apply")
    data = json.loads(raw.get("lock.json") or b"")
    data["pid"] = _dead_pid()
    raw.put("lock.json", json.dumps(data).encode())
    with pytest.raises(StateLockedError, match="no longer running"):
        make().lock("apply")
    make().force_unlock(held.id)
    make().unlock(make().lock("apply").id)


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# -- a run that lost its lock -------------------------------------------------------------------


def check_a_lost_lock_never_overwrites_a_newer_state(make: Factory, raw: Raw, tmp: Path) -> None:
    """A takes the lock and reads; B force-unlocks, locks and writes; A's writes all fail."""
    first, _ = two_writes(make, tmp)
    a = make()
    a_lock = a.lock("apply")
    seen = a.read()
    assert seen is not None
    b = make()
    b.force_unlock(a_lock.id, force=True)  # A's process is this one, alive: --force
    b.lock("apply")
    newer = b.write(seen.without("b.x"))
    before = {name: raw.get(name) for name in raw.names()}
    with pytest.raises(StateError, match="another segops run wrote it") as info:
        a.write(seen.with_destination(entry("c.x", first.destinations[0].snapshot.sha256)))
    assert "state.json" in str(info.value)
    with pytest.raises(StateError, match="another segops run wrote it"):
        a.read()
    assert {name: raw.get(name) for name in raw.names()} == before  # nothing written
    state = make().read()
    assert state is not None and (state.serial, state.destinations) == (
        newer.serial,
        newer.destinations,
    )


def check_a_lost_lock_on_a_first_apply(make: Factory) -> None:
    """The same when there was no state yet: A's first write must not replace B's."""
    a = make()
    a_lock = a.lock("apply")
    assert a.read() is None
    b = make()
    b.force_unlock(a_lock.id, force=True)
    b.lock("apply")
    b.write(State("b-lineage", 0, "0.1"))
    with pytest.raises(StateError, match="another segops run wrote it"):
        a.write(State("a-lineage", 0, "0.1"))
    state = make().read()
    assert state is not None and state.lineage == "b-lineage"


# -- records ------------------------------------------------------------------------------------


def check_records_compare_and_swap(make: Factory) -> None:
    records = make().records
    assert records.get("journal.jsonl") is None
    tag = records.put("journal.jsonl", b"one\n", None)
    assert records.get("journal.jsonl") == (b"one\n", tag)
    with pytest.raises(StateError, match="another segops run wrote it"):
        records.put("journal.jsonl", b"clobber\n", None)  # "new" but it exists
    other = make().records  # another run rewrites it
    newer = other.put("journal.jsonl", b"two\n", tag)
    with pytest.raises(StateError, match="another segops run wrote it") as info:
        records.put("journal.jsonl", b"stale\n", tag)
    assert "journal.jsonl" in str(info.value)
    assert make().records.get("journal.jsonl") == (b"two\n", newer)
    for name in ("state.json", "lock.json", "../x", "snapshots/x", ".hidden", "new-state.json"):
        with pytest.raises(StateError, match="cannot name a state record"):
            records.put(name, b"", None)


def check_abandon_keeps_quota_ledgers(make: Factory, raw: Raw, tmp: Path) -> None:
    """Ledgers record the platforms' quotas, still true after a state is lost: they stay."""
    two_writes(make, tmp)
    make().records.put("moengage-ledger-moe.json", b"{}", None)
    raw.delete("state.json")
    begun = make().abandon(State("fresh", 0, "0.1"))
    assert begun.lineage == "fresh"
    assert raw.get("moengage-ledger-moe.json") == b"{}"
    assert make().write(State("fresh", 0, "0.1")).serial == 1


# -- a state moved by `segops state migrate` ---------------------------------------------------


def check_a_moved_store_says_where_the_state_went(make: Factory, raw: Raw, tmp: Path) -> None:
    two_writes(make, tmp)
    kept = {name: raw.get(name) for name in raw.names()}
    record = b'{"moved_to": "s3://b/p", "at": "2026-01-01T00:00:00+00:00", "config": "state:"}'
    make().retire(record)
    for use in (
        lambda s: s.read(),
        lambda s: s.write(State("lin", 0, "0.1")),
        lambda s: s.recover(force=True),
        lambda s: s.abandon(State("x", 0, "0.1")),
    ):
        with pytest.raises(StateError, match="moved to s3://b/p by `segops state migrate`"):
            use(make())
    assert {name: raw.get(name) for name in raw.names() if name != "moved.json"} == kept
    raw.delete("moved.json")  # going back: the state beside it is unchanged
    state = make().read()
    assert state is not None and state.serial == 2


def check_entries_export_and_import(make: Factory, other: Factory, tmp: Path) -> None:
    """What `segops state migrate` moves: every entry, byte for byte, but the lock."""
    _, current = two_writes(make, tmp)
    make().records.put("journal.jsonl", b"{}\n", None)
    source, target = make(), other()
    held = source.lock("apply")
    names = source.entries()
    assert "lock.json" not in names and "state.json" in names and "journal.jsonl" in names
    for number, name in enumerate(names):
        path = tmp / f"entry-{number}"
        source.export_to(name, path)
        target.import_from(name, path)
    source.unlock(held.id)
    assert sorted(target.entries()) == sorted(names)
    copied = other().read()
    assert copied is not None and (copied.lineage, copied.serial) == (
        current.lineage,
        current.serial,
    )
    for sha in current.snapshot_digests():
        assert other().snapshot_path(sha).read_bytes() == make().snapshot_path(sha).read_bytes()
