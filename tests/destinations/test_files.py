from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow as pa
import pytest

from segops.destinations import ApplyResult, DeltaRows, Destination, MemberRow, Sent
from segops.destinations.files import FilesDestination
from segops.errors import DestinationError
from segops.model import (
    Action,
    Connection,
    DestinationChange,
    KeyEncoding,
    MemberCounts,
    Platform,
    Scalar,
)
from tests.destinations.rules import check_member_file, check_request_body, parse_csv, parse_ndjson

RUN = "20260101T000000Z"
ADDRESS = "cart.dest"


def connection(target: Platform, **options: Scalar) -> Connection:
    return Connection(
        "files", Platform.FILES, target, tuple(sorted({"path": "out/files", **options}.items()))
    )


def mics_settings(**extra: Scalar) -> tuple[tuple[str, Scalar], ...]:
    values: dict[str, Scalar] = {
        "connection": "files",
        "datamart_id": "1509",
        "expiration_duration": 10080,
        "identifier.kind": "email_hash",
        "identifier.format": "sha256",
        "segment_technical_name": "cart",
        **extra,
    }
    return tuple(sorted((k, v) for k, v in values.items() if v is not None))


def moe_settings(**extra: Scalar) -> tuple[tuple[str, Scalar], ...]:
    values: dict[str, Scalar] = {
        "connection": "files",
        "segment.name": "cart_7d",
        "attribute.name": "email",
        "attribute.type": "string",
        "expiry_days": 30,
        **extra,
    }
    return tuple(sorted((k, v) for k, v in values.items() if v is not None))


def change(
    before: Any, after: Any, *actions: Action, attributes: tuple[str, ...] = ()
) -> DestinationChange:
    return DestinationChange(
        address=ADDRESS,
        segment="cart",
        connection="files",
        platform=Platform.FILES,
        actions=actions,
        settings_before=before,
        settings_after=after,
        setting_changes=(),
        members=MemberCounts(),
        delta=None,
        encoding=KeyEncoding.TEXT,
        attributes=attributes,
    )


@pytest.fixture(autouse=True, params=["rows", "batches"])
def delta_form(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run every test with the delta given as rows, then as Arrow batches (apply gives both)."""
    global _FORM
    _FORM = request.param
    yield _FORM
    _FORM = "rows"


_FORM = "rows"


def rows_of(*rows: MemberRow) -> Any:
    """Return the delta as apply hands it over: a callable, with Arrow batches of 2 rows."""

    def rows_fn() -> Iterable[MemberRow]:
        return iter(rows)

    if _FORM == "rows":
        return rows_fn
    return DeltaRows(rows_fn, lambda: batches_of(rows, 2))


def batches_of(rows: Sequence[MemberRow], size: int) -> Iterator[pa.RecordBatch]:
    """Yield `rows` as the engine's delta batches (see DuckDBEngine.delta_batches)."""
    for start in range(0, len(rows), size):
        part = rows[start : start + size]
        yield pa.RecordBatch.from_pydict(
            {
                "op": pa.array([r.op for r in part], pa.string()),
                "key": pa.array([r.key for r in part], pa.string()),
                "data_bag": pa.array([r.data_bag for r in part], pa.string()),
                "expiration_ts": pa.array([r.expiration_ts for r in part], pa.int64()),
                "index": pa.array(range(start, start + len(part)), pa.int64()),
            }
        )


def apply(
    tmp_path: Path, conn: Connection, chg: DestinationChange, rows: list[MemberRow], **kwargs: Any
) -> ApplyResult:
    destination: Destination = FilesDestination(tmp_path, conn, RUN, **kwargs)
    result = destination.apply(chg, rows_of(*rows))
    assert len(set(result.files)) == len(result.files), "each file listed once"
    assert all((tmp_path / f).is_file() for f in result.files)
    assert not [p for p in tmp_path.rglob("*.tmp")], "no temporary file left"
    return result


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def h(i: int) -> str:
    return f"{i:064x}"


ADDS = [MemberRow("add", h(1), '{"basket":"a, \\"b\\""}', 1767225600000), MemberRow("add", h(2))]
MICS = "out/files/" + RUN + "/mediarithmics"


# mediarithmics


def test_mediarithmics_create_writes_the_import_body_and_ndjson_commands(tmp_path: Path) -> None:
    rows = [*ADDS, MemberRow("update", h(3), "{}")]
    result = apply(
        tmp_path,
        connection(Platform.MEDIARITHMICS),
        change(None, mics_settings(), Action.CREATE),
        rows,
    )

    folder = f"{MICS}/datamart-1509"
    assert tree(tmp_path) == [f"{folder}/{ADDRESS}.ndjson", f"{folder}/document_import.json"]
    assert result == ApplyResult(
        ADDRESS, True, Sent(add=2, update=1), result.files, "wrote 2 files: +2 -0 ~1"
    )
    assert sorted(result.files) == tree(tmp_path)
    body = json.loads((tmp_path / folder / "document_import.json").read_text())
    assert body == {
        "document_type": "USER_SEGMENT",
        "mime_type": "APPLICATION_X_NDJSON",
        "encoding": "utf-8",
        "name": f"segops files {RUN}",
    }
    commands = parse_ndjson((tmp_path / folder / f"{ADDRESS}.ndjson").read_text("utf-8"))
    assert [(c["operation"], c["email_hash"]) for c in commands] == [
        ("UPDATE", h(1)),
        ("UPDATE", h(2)),
        ("UPDATE", h(3)),
    ]
    assert json.loads(commands[0]["data_bag"]) == {"basket": 'a, "b"'}


def test_mediarithmics_csv_uses_the_declared_attribute_columns(tmp_path: Path) -> None:
    rows = [MemberRow("remove", h(9), "{}"), *ADDS]
    result = apply(
        tmp_path,
        connection(Platform.MEDIARITHMICS, mime_type="TEXT_CSV"),
        change(
            mics_settings(),
            mics_settings(),
            Action.ADD,
            Action.REMOVE,
            attributes=("data_bag", "expiration_ts"),
        ),
        rows,
    )

    assert result.sent == Sent(add=2, remove=1)
    text = (tmp_path / MICS / "datamart-1509" / f"{ADDRESS}.csv").read_text("utf-8")
    header, commands = parse_csv(text)
    assert header == [
        "operation",
        "expiration_duration",
        "expiration_ts",
        "email_hash",
        "segment_technical_name",
        "data_bag",
    ]
    assert [(c["operation"], c["email_hash"]) for c in commands] == [
        ("DELETE", h(9)),
        ("UPDATE", h(1)),
        ("UPDATE", h(2)),
    ]
    assert "data_bag" not in commands[0] and commands[1]["expiration_ts"] == 1767225600000
    body = json.loads((tmp_path / MICS / "datamart-1509" / "document_import.json").read_text())
    assert body["mime_type"] == "TEXT_CSV"


def test_recreate_to_another_datamart_removes_from_the_old_one(tmp_path: Path) -> None:
    before = mics_settings(datamart_id="1", segment_technical_name=None, segment_id="7")
    after = mics_settings(datamart_id="2")
    rows = [MemberRow("remove", h(8)), *ADDS]
    result = apply(
        tmp_path, connection(Platform.MEDIARITHMICS), change(before, after, Action.RECREATE), rows
    )

    assert tree(tmp_path) == [
        f"{MICS}/datamart-1/{ADDRESS}.ndjson",
        f"{MICS}/datamart-1/document_import.json",
        f"{MICS}/datamart-2/{ADDRESS}.ndjson",
        f"{MICS}/datamart-2/document_import.json",
    ]
    old = parse_ndjson((tmp_path / MICS / "datamart-1" / f"{ADDRESS}.ndjson").read_text())
    new = parse_ndjson((tmp_path / MICS / "datamart-2" / f"{ADDRESS}.ndjson").read_text())
    assert old == [
        {"operation": "DELETE", "expiration_duration": 10080, "email_hash": h(8), "segment_id": "7"}
    ]
    assert [c["operation"] for c in new] == ["UPDATE", "UPDATE"]
    assert all(c["segment_technical_name"] == "cart" for c in new)
    assert result.sent == Sent(add=2, remove=1)


def test_recreate_in_one_datamart_with_other_csv_columns_splits_the_removes(tmp_path: Path) -> None:
    before = mics_settings(segment_technical_name=None, segment_id="7")
    rows = [MemberRow("remove", h(8)), *ADDS]
    apply(
        tmp_path,
        connection(Platform.MEDIARITHMICS, mime_type="TEXT_CSV"),
        change(before, mics_settings(), Action.RECREATE, attributes=("data_bag", "expiration_ts")),
        rows,
    )

    folder = tmp_path / MICS / "datamart-1509"
    removes_header, removes = parse_csv((folder / f"{ADDRESS}.remove.csv").read_text())
    adds_header, adds = parse_csv((folder / f"{ADDRESS}.csv").read_text())
    assert removes_header == ["operation", "expiration_duration", "email_hash", "segment_id"]
    assert [c["operation"] for c in removes] == ["DELETE"]
    assert "segment_technical_name" in adds_header and len(adds) == 2


def test_recreate_in_one_datamart_shares_one_ndjson_file(tmp_path: Path) -> None:
    before = mics_settings(expiration_duration=0)
    rows = [MemberRow("remove", h(8)), *ADDS]
    apply(
        tmp_path,
        connection(Platform.MEDIARITHMICS),
        change(before, mics_settings(), Action.RECREATE),
        rows,
    )
    commands = parse_ndjson((tmp_path / MICS / "datamart-1509" / f"{ADDRESS}.ndjson").read_text())
    assert [(c["operation"], c["expiration_duration"]) for c in commands] == [
        ("DELETE", 0),
        ("UPDATE", 10080),
        ("UPDATE", 10080),
    ]


def test_destroy_sends_deletes_with_the_old_settings(tmp_path: Path) -> None:
    before = mics_settings(**{"identifier.kind": "user_account_id", "compartment_id": "12"})
    result = apply(
        tmp_path,
        connection(Platform.MEDIARITHMICS),
        change(before, None, Action.DESTROY),
        [MemberRow("remove", "crm-42")],
    )
    (path,) = [p for p in result.files if p.endswith(".ndjson")]
    assert parse_ndjson((tmp_path / path).read_text()) == [
        {
            "operation": "DELETE",
            "expiration_duration": 10080,
            "user_account_id": "crm-42",
            "compartment_id": "12",
            "segment_technical_name": "cart",
        }
    ]


def test_adds_without_settings_after_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="adds to send"):
        apply(
            tmp_path,
            connection(Platform.MEDIARITHMICS),
            change(mics_settings(), None, Action.DESTROY),
            ADDS,
        )
    assert tree(tmp_path) == []


def test_no_rows_writes_nothing(tmp_path: Path) -> None:
    result = apply(
        tmp_path,
        connection(Platform.MEDIARITHMICS),
        change(mics_settings(), mics_settings(), Action.UPDATE),
        [],
    )
    assert result.files == () and result.sent == Sent() and tree(tmp_path) == []


# MoEngage


def moe_steps(
    tmp_path: Path, result: ApplyResult, max_bytes: int = 150_000_000
) -> list[tuple[str, dict[str, Any], list[str]]]:
    """Check every step of a MoEngage result; return (stem, body, members) per step."""
    folder = tmp_path / "out/files" / RUN / "moengage" / ADDRESS
    stems = sorted({p.stem for p in folder.iterdir()})
    expected = [folder / f"{s}.{e}" for s in stems for e in ("csv", "json")]
    assert sorted(result.files) == sorted(p.relative_to(tmp_path).as_posix() for p in expected)
    steps = []
    for number, stem in enumerate(stems, 1):
        assert stem.startswith(f"{number:02d}-")
        request = json.loads((folder / f"{stem}.json").read_text())
        assert set(request) == {"method", "path", "headers", "body"}
        assert request["headers"] == {"Content-Type": "application/json"}
        check_request_body(request["method"], request["path"], request["body"])
        member_file = Path(url2pathname(urlparse(request["body"]["file_url"]).path))
        assert member_file == (folder / f"{stem}.csv").resolve()
        steps.append(
            (stem, request["body"], check_member_file(member_file.read_bytes(), max_bytes))
        )
    return steps


def test_moengage_create_writes_one_create_step(tmp_path: Path) -> None:
    rows = [
        MemberRow("add", "a@x.io"),
        MemberRow("add", "b@x.io"),
        MemberRow("update", "c@x.io", "{}"),
    ]
    result = apply(
        tmp_path,
        connection(Platform.MOENGAGE, callback_url="https://cb.example/x"),
        change(None, moe_settings(), Action.CREATE),
        rows,
    )

    ((stem, body, members),) = moe_steps(tmp_path, result)
    assert stem == "01-create" and members == ["a@x.io", "b@x.io"]
    assert body == {
        "name": "cart_7d",
        "attribute_name": "email",
        "attribute_type": "string",
        "file_url": body["file_url"],
        "callback_url": "https://cb.example/x",
        "expiry_time": 30,
    }
    assert result.sent == Sent(add=2, remove=0, update=0)  # no member attributes on MoEngage


def test_moengage_update_removes_then_adds(tmp_path: Path) -> None:
    settings = moe_settings(**{"segment.cs_id": "6a1d"})
    rows = [MemberRow("remove", "z@x.io"), MemberRow("add", "a@x.io")]
    result = apply(
        tmp_path,
        connection(Platform.MOENGAGE),
        change(settings, settings, Action.ADD, Action.REMOVE),
        rows,
    )

    steps = moe_steps(tmp_path, result)
    assert [(s, m) for s, _, m in steps] == [
        ("01-remove-users", ["z@x.io"]),
        ("02-add-users", ["a@x.io"]),
    ]
    assert all(b["cs_id"] == "6a1d" for _, b, _ in steps)
    assert result.sent == Sent(add=1, remove=1)


def test_moengage_skips_an_empty_step(tmp_path: Path) -> None:
    result = apply(
        tmp_path,
        connection(Platform.MOENGAGE),
        change(moe_settings(), moe_settings(), Action.REMOVE),
        [MemberRow("remove", "z@x.io"), MemberRow("update", "y@x.io")],
    )
    assert [s for s, _, _ in moe_steps(tmp_path, result)] == ["01-remove-users"]


def test_moengage_recreate_under_a_new_name_creates_the_new_segment(tmp_path: Path) -> None:
    before = moe_settings(**{"segment.name": "old", "segment.cs_id": "6a"})
    rows = [MemberRow("remove", "z@x.io"), MemberRow("add", "a@x.io")]
    result = apply(
        tmp_path,
        connection(Platform.MOENGAGE),
        change(before, moe_settings(), Action.RECREATE),
        rows,
    )

    (s1, b1, m1), (s2, b2, m2) = moe_steps(tmp_path, result)
    assert (s1, b1["name"], b1["cs_id"], m1) == ("01-remove-users", "old", "6a", ["z@x.io"])
    assert (s2, b2["name"], m2) == ("02-create", "cart_7d", ["a@x.io"])


def test_moengage_recreate_of_the_same_segment_adds_to_it(tmp_path: Path) -> None:
    # a new attribute on the same segment name: creating it again would be refused (409)
    before = moe_settings(**{"attribute.name": "ID"})
    rows = [MemberRow("remove", "42"), MemberRow("add", "a@x.io")]
    result = apply(
        tmp_path,
        connection(Platform.MOENGAGE),
        change(before, moe_settings(), Action.RECREATE),
        rows,
    )

    (s1, b1, _), (s2, b2, _) = moe_steps(tmp_path, result)
    assert (s1, b1["attribute_name"]) == ("01-remove-users", "ID")
    assert (s2, b2["attribute_name"]) == ("02-add-users", "email")


def test_moengage_destroy_removes_every_member(tmp_path: Path) -> None:
    rows = [MemberRow("remove", f"u{i}@x.io") for i in range(5)]
    result = apply(
        tmp_path, connection(Platform.MOENGAGE), change(moe_settings(), None, Action.DESTROY), rows
    )
    ((stem, _, members),) = moe_steps(tmp_path, result)
    assert stem == "01-remove-users" and len(members) == 5


def test_moengage_create_without_members_still_creates(tmp_path: Path) -> None:
    result = apply(
        tmp_path, connection(Platform.MOENGAGE), change(None, moe_settings(), Action.CREATE), []
    )
    assert [(s, m) for s, _, m in moe_steps(tmp_path, result)] == [("01-create", [])]


def test_moengage_member_files_split_over_the_byte_limit(tmp_path: Path) -> None:
    rows = [MemberRow("remove", f"old{i}@x.io") for i in range(30)]
    rows += [MemberRow("add", f"user{i}@x.io") for i in range(50)]
    result = apply(
        tmp_path,
        connection(Platform.MOENGAGE),
        change(moe_settings(), moe_settings(**{"segment.name": "new"}), Action.RECREATE),
        rows,
        max_file_bytes=200,
    )

    steps = moe_steps(tmp_path, result, max_bytes=200)
    operations = [s.split("-", 1)[1] for s, _, _ in steps]
    assert operations[0] == "remove-users" and "create" in operations
    first_create = operations.index("create")
    assert set(operations[:first_create]) == {"remove-users"}
    assert set(operations[first_create + 1 :]) == {"add-users"}, "a split create goes on as adds"
    assert [m for _, _, ms in steps[:first_create] for m in ms] == [r.key for r in rows[:30]]
    assert [m for _, _, ms in steps[first_create:] for m in ms] == [r.key for r in rows[30:]]
    assert all(b["name"] == "new" for _, b, _ in steps[first_create:])
    assert result.sent == Sent(add=50, remove=30)


# files: atomic, durable, refused input


def test_a_bad_key_leaves_no_file_behind(tmp_path: Path) -> None:
    conn = connection(Platform.MOENGAGE)
    apply(tmp_path, conn, change(None, moe_settings(), Action.CREATE), [MemberRow("add", "a")])
    before = {p: (tmp_path / p).read_bytes() for p in tree(tmp_path)}
    rows = [
        MemberRow("remove", "z"),
        *[MemberRow("add", f"u{i}") for i in range(10)],
        MemberRow("add", "bad,key"),
    ]
    with pytest.raises(DestinationError, match="#11 holds a comma"):
        apply(tmp_path, conn, change(moe_settings(), moe_settings(), Action.ADD), rows)
    assert {p: (tmp_path / p).read_bytes() for p in tree(tmp_path)} == before


def test_files_are_fsynced_before_they_are_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync")
        real_fsync(fd)

    def replace(src: str, dst: str, **dirs: int) -> None:
        # Renamed within one folder, opened without following symlinks.
        assert dirs["src_dir_fd"] == dirs["dst_dir_fd"] and "/" not in src + dst
        assert src.startswith(".") and src.endswith(".tmp")
        events.append("replace")
        real_replace(src, dst, **dirs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    result = apply(
        tmp_path,
        connection(Platform.MEDIARITHMICS),
        change(None, mics_settings(), Action.CREATE),
        ADDS,
    )

    assert events[:4] == ["fsync", "fsync", "replace", "replace"]
    assert set(events[4:]) == {"fsync-dir"}
    assert len(result.files) == 2
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_only_the_folders_whose_entries_changed_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write syncs the folder its files land in and the parents of the folders it
    created; a second one into the same tree syncs only the folder its files land in."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isdir(path):
            synced.append(Path(path).relative_to(tmp_path).as_posix())
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    conn = connection(Platform.MEDIARITHMICS)
    apply(tmp_path, conn, change(None, mics_settings(), Action.CREATE), ADDS)
    run = "out/files/" + RUN
    # out/files was made by mkdir(parents=True), as the output folder: it is synced itself
    assert sorted(synced) == sorted(["out/files", run, MICS, MICS + "/datamart-1509"])
    synced.clear()
    apply(tmp_path, conn, change(mics_settings(), mics_settings(), Action.ADD), ADDS)
    assert synced == [MICS + "/datamart-1509"]


def test_the_import_body_another_destination_wrote_is_kept_and_listed(tmp_path: Path) -> None:
    """Destinations of one datamart share document_import.json: the second one finds the
    same bytes there and lists the file without writing it again (no new inode)."""
    conn = connection(Platform.MEDIARITHMICS)
    first = apply(tmp_path, conn, change(None, mics_settings(), Action.CREATE), ADDS)
    body = tmp_path / MICS / "datamart-1509" / "document_import.json"
    written = body.stat()
    other = replace(change(None, mics_settings(), Action.CREATE), address="other.dest")
    second = apply(tmp_path, conn, other, ADDS)
    assert body.stat().st_ino == written.st_ino
    assert sorted(second.files) == sorted(
        [f"{MICS}/datamart-1509/other.dest.ndjson", f"{MICS}/datamart-1509/document_import.json"]
    )
    assert sorted(first.files) == sorted(
        [f"{MICS}/datamart-1509/{ADDRESS}.ndjson", f"{MICS}/datamart-1509/document_import.json"]
    )
    # A file there with other bytes is replaced, as before.
    body.write_text("{}\n")
    third = apply(tmp_path, conn, other, ADDS)
    assert json.loads(body.read_text())["document_type"] == "USER_SEGMENT"
    assert f"{MICS}/datamart-1509/document_import.json" in third.files


def test_unknown_row_operation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="upsert"):
        apply(
            tmp_path,
            connection(Platform.MOENGAGE),
            change(None, moe_settings(), Action.CREATE),
            [MemberRow("upsert", "a")],
        )
    assert tree(tmp_path) == []


@pytest.mark.parametrize("run", ["", "..", "a/b"])
def test_run_is_one_folder_name(tmp_path: Path, run: str) -> None:
    with pytest.raises(DestinationError, match="run name"):
        FilesDestination(tmp_path, connection(Platform.MOENGAGE), run)


def test_a_files_connection_needs_a_target(tmp_path: Path) -> None:
    with pytest.raises(DestinationError, match="no target platform"):
        apply(
            tmp_path, connection(Platform.FILES), change(None, mics_settings(), Action.CREATE), ADDS
        )
