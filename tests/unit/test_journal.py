"""The apply journal survives kills and never lets an entry vouch for another change."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from segops.apply.journal import FileJournal, JournalResources
from segops.apply.loop import ScopedJournal
from segops.errors import StateError
from segops.model import DestinationChange, KeyEncoding, MemberCounts, Platform, Settings


def change(
    base: str, before: Settings | None = None, after: Settings | None = None
) -> DestinationChange:
    return DestinationChange(
        address="s.x",
        segment="s",
        connection="c",
        platform=Platform.MEDIARITHMICS,
        actions=(),
        settings_before=before,
        settings_after=after,
        setting_changes=(),
        members=MemberCounts(),
        delta=None,
        encoding=KeyEncoding.TEXT,
        base=base,
    )


def test_entries_survive_a_new_process_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = FileJournal(path)
    journal.record("op1", "s.x", "intent")
    journal.record("op1", "s.x", "accepted", execution_id="77")
    JournalResources(journal).put("mediarithmics/c/1509/NDJSON", "42")
    with path.open("a") as handle:
        handle.write('{"op": "op2", "addr')  # killed mid-write
    again = FileJournal(path)
    assert again.get("op1") == {
        "op": "op1",
        "address": "s.x",
        "status": "accepted",
        "execution_id": "77",
    }
    assert again.get("op2") is None
    assert JournalResources(again).get("mediarithmics/c/1509/NDJSON") == "42"


def test_forget_drops_operations_and_keeps_resources(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = FileJournal(path)
    journal.record("a", "s.x", "confirmed")
    journal.record("b", "t.y", "accepted")
    journal.put_resource("k", "v")
    journal.forget("s.x")
    again = FileJournal(path)
    assert again.get("a") is None
    assert again.get("b") is not None
    assert again.resources == {"k": "v"}


def test_forget_of_several_addresses_stores_the_journal_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = FileJournal(path)
    for op, address in [("a", "s.x"), ("b", "t.y"), ("c", "u.z"), ("d", "s.x")]:
        journal.record(op, address, "confirmed")
    stored: list[bytes] = []
    real = journal.records.put
    monkeypatch.setattr(
        journal.records, "put", lambda *a: stored.append(a[1]) or real(*a), raising=False
    )
    journal.forget("s.x", "u.z")
    assert len(stored) == 1
    again = FileJournal(path)
    assert [again.get(op) is None for op in "abcd"] == [True, False, True, True]


def test_unknown_status_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown journal status"):
        FileJournal(tmp_path / "j").record("a", "s.x", "done")


def test_a_change_sees_only_entries_of_its_own_base(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path / "journal.jsonl")
    ScopedJournal(journal, change("aaa")).record("op", "s.x", "confirmed")
    assert ScopedJournal(journal, change("aaa")).get("op") is not None
    # The same delta computed against another snapshot is another change.
    assert ScopedJournal(journal, change("bbb")).get("op") is None
    assert ScopedJournal(journal, change("")).get("op") is None


def test_a_torn_tail_never_swallows_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    FileJournal(path).record("op1", "s.x", "intent")
    with path.open("a") as handle:
        handle.write('{"op": "op2", "address": "s.x", "sta')  # killed mid-write
    journal = FileJournal(path)
    journal.record("op3", "s.x", "accepted", execution_id="9")
    again = FileJournal(path)
    assert again.get("op3") is not None and again.get("op3")["execution_id"] == "9"  # type: ignore[index]
    assert again.get("op1") is not None and again.get("op2") is None
    assert path.read_bytes().endswith(b"\n")


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b'{"op": "x", "address": "s.x", "status": "done"}',
        b'{"op": 7, "address": "s.x", "status": "sent"}',
        b'{"resource": "k"}',
        b'{"something": "else"}',
        b'{"op": "x", "address": "s.x", "status": "sent", "note": "\xff"}',
    ],
    ids=["text", "list", "string", "status", "op-type", "no-value", "unknown", "not-utf8"],
)
def test_a_damaged_line_is_refused_naming_it(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "journal.jsonl"
    FileJournal(path).record("op1", "s.x", "intent")
    with path.open("ab") as handle:
        handle.write(line + b"\n")
        handle.write(b'{"op": "op2", "address": "s.x", "status": "sent"}\n')
    with pytest.raises(StateError, match=r"journal.jsonl:2: not an apply journal entry") as info:
        FileJournal(path)
    assert "segops apply" in str(info.value)


@pytest.mark.parametrize("kind", ["folder", "unreadable"])
def test_a_journal_that_cannot_be_read_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "journal.jsonl"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_text("{}\n")
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: damage it another way
            path.chmod(0o600)
            path.unlink()
            path.symlink_to(path)  # a loop: reading fails with ELOOP
    with pytest.raises(StateError, match="cannot read the apply journal"):
        FileJournal(path)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_journal_is_private(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "state" / "journal.jsonl"
    old = os.umask(umask)
    try:
        journal = FileJournal(path)
        journal.record("a", "s.x", "intent")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        journal.forget("s.x")  # rewritten whole
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


NAME_A: Settings = (("segment.name", "a"),)
NAME_B: Settings = (("segment.name", "b"),)


@pytest.mark.parametrize(
    "before,after",
    [
        (NAME_B, NAME_B),  # the next change after a recreate a -> b, same members
        (NAME_A, NAME_A),
        (None, NAME_B),
        (NAME_A, None),
        ((("attribute.name", "email"),), (("attribute.name", "email_address"),)),
    ],
)
def test_a_change_with_other_settings_does_not_see_entries_of_the_same_snapshot(
    tmp_path: Path, before: Settings | None, after: Settings | None
) -> None:
    journal = FileJournal(tmp_path / "journal.jsonl")
    ScopedJournal(journal, change("aaa", NAME_A, NAME_B)).record("op", "s.x", "confirmed")
    assert ScopedJournal(journal, change("aaa", NAME_A, NAME_B)).get("op") is not None
    assert ScopedJournal(journal, change("aaa", before, after)).get("op") is None
