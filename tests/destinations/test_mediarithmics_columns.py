"""The command lines built a column at a time equal the lines built one row at a time."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from segops.destinations import DeltaRows, MemberRow
from segops.destinations.files import FilesDestination
from segops.destinations.mediarithmics import columns
from segops.destinations.mediarithmics import commands as mics
from segops.errors import DestinationError
from segops.model import Platform
from tests.destinations.test_files import batches_of, change, connection, mics_settings
from tests.destinations.test_mediarithmics_commands import target

# Characters JSON escapes, CSV quotes, and the ones neither touches (non-ASCII stays UTF-8).
# Without control characters, JSON escaping takes the kernels' path (quotes, backslashes).
ESCAPED = ['"', "\\", ",", "é", "中", "\u2028", "a", "0", " "]
TRICKY = [*ESCAPED, "\n", "\r", "\t", "\x00", "\x1f"]


def values(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = TRICKY if seed % 2 else ESCAPED
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(count)]


TARGETS = {
    "email_hash": target(),
    "account, quoted cells": target(
        **{"identifier.kind": "user_account_id", "compartment_id": '1,"2"'},
        segment_technical_name=None,
        segment_id="7",
    ),
}


def adds(seed: int) -> list[MemberRow]:
    keys, bags = values(seed, 200), values(seed + 1, 200)
    return [
        MemberRow(
            "add" if i % 3 else "update",
            keys[i],
            None if i % 4 == 0 else bags[i],
            None if i % 5 == 0 else i * 1_000_000_007 - 10**9,
        )
        for i in range(200)
    ]


def removes(seed: int) -> list[MemberRow]:
    return [MemberRow("remove", key, "{}", 5) for key in values(seed, 100)]


PLAIN = [MemberRow("add", f"{i:064x}") for i in range(50)]  # the fast path: nothing to escape


def text(lines: pa.Array) -> str:
    return bytes(columns.line_bytes(lines)).decode("utf-8")


def batch(rows: list[MemberRow]) -> pa.RecordBatch:
    (only,) = batches_of(rows, len(rows))
    return only


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_ndjson_columns_equal_the_row_lines(name: str, seed: int) -> None:
    chosen = TARGETS[name]
    for rows, removing in ((adds(seed), False), (removes(seed), True), (PLAIN, False)):
        expected = "".join(mics.ndjson_lines(chosen, rows))
        assert text(columns.ndjson_column(chosen, batch(rows), removing=removing)) == expected


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize(("with_ts", "with_bag"), [(True, True), (True, False), (False, True)])
def test_csv_columns_equal_the_row_lines(name: str, with_ts: bool, with_bag: bool) -> None:
    chosen = TARGETS[name]
    cols = mics.csv_columns(chosen, expiration_ts=with_ts, data_bag=with_bag)
    keep = [
        MemberRow(
            r.op, r.key, r.data_bag if with_bag else None, r.expiration_ts if with_ts else None
        )
        for seed in (4, 5)
        for r in adds(seed)
    ]
    for rows, removing in ((keep, False), (removes(5), True), (removes(6), True), (PLAIN, False)):
        expected = "".join(mics.csv_rows(chosen, rows, cols))
        assert text(columns.csv_column(chosen, batch(rows), cols, removing=removing)) == expected


@pytest.mark.parametrize("mime", mics.MIME_TYPES)
def test_hex_keys_need_no_escaping(mime: str) -> None:
    chosen = TARGETS["account, quoted cells"]
    cols = mics.csv_columns(chosen, expiration_ts=True, data_bag=True)
    for removing, rows in ((False, PLAIN), (True, [MemberRow("remove", r.key) for r in PLAIN])):
        expected = "".join(mics.command_lines(chosen, rows, mime, cols))
        if mime == mics.NDJSON:
            lines = columns.ndjson_column(chosen, batch(rows), removing=removing, plain_keys=True)
        else:
            lines = columns.csv_column(
                chosen, batch(rows), cols, removing=removing, plain_keys=True
            )
        assert text(lines) == expected


def test_csv_refuses_a_value_without_its_column_like_the_row_lines() -> None:
    cols = mics.csv_columns(target(), expiration_ts=False, data_bag=False)
    rows = [MemberRow("add", "k", None, 5)]
    with pytest.raises(DestinationError, match="has only the columns") as by_rows:
        "".join(mics.csv_rows(target(), rows, cols))
    with pytest.raises(DestinationError, match="has only the columns") as by_columns:
        columns.csv_column(target(), batch(rows), cols, removing=False)
    assert str(by_rows.value) == str(by_columns.value)


def test_line_bytes_of_a_slice_are_the_slice_lines() -> None:
    lines = columns.ndjson_column(target(), batch(PLAIN), removing=False)
    whole = text(lines).splitlines(keepends=True)
    assert text(lines.slice(3, 4)) == "".join(whole[3:7])
    assert text(lines.slice(5, 0)) == ""


def test_a_missing_key_is_refused() -> None:
    rows = batch([MemberRow("add", "k")]).set_column(1, "key", pa.array([None], pa.string()))
    with pytest.raises(DestinationError, match="no identifier"):
        columns.ndjson_column(target(), rows, removing=False)


def test_files_take_the_batches_when_apply_offers_them(tmp_path: Path) -> None:
    rows = [MemberRow("remove", "gone"), *adds(6)]

    def no_rows() -> list[MemberRow]:
        raise AssertionError("the mediarithmics files form reads batches")

    destination = FilesDestination(tmp_path / "b", connection(Platform.MEDIARITHMICS), "run")
    settings = mics_settings()
    result = destination.apply(
        change(settings, settings), DeltaRows(no_rows, lambda: batches_of(rows, 7))
    )
    by_rows = FilesDestination(tmp_path / "r", connection(Platform.MEDIARITHMICS), "run").apply(
        change(settings, settings), lambda: iter(rows)
    )
    assert result.sent == by_rows.sent and result.files == by_rows.files
    for name in result.files:
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "r" / name).read_bytes()


def test_the_writer_keeps_the_order_and_starts_a_thread_only_for_a_second_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from segops.destinations.mediarithmics import files

    started: list[str] = []
    real = files.ThreadPoolExecutor

    def counted(*args: Any, **kwargs: Any) -> Any:
        started.append("pool")
        return real(*args, **kwargs)

    monkeypatch.setattr(files, "ThreadPoolExecutor", counted)
    one = io.BytesIO()
    with files._Writer() as writer:
        writer.write(one, memoryview(b"only\n"))
        assert one.getvalue() == b"", "held until the end"
    assert one.getvalue() == b"only\n" and started == []

    a, b = io.BytesIO(), io.BytesIO()
    with files._Writer() as writer:
        for i in range(5):
            writer.write(a if i % 2 else b, memoryview(f"{i}\n".encode()))
    assert (b.getvalue(), a.getvalue()) == (b"0\n2\n4\n", b"1\n3\n") and started == ["pool"]


def test_the_writer_raises_a_failed_write_and_writes_nothing_held_after_an_error() -> None:
    from segops.destinations.mediarithmics import files

    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"), files._Writer() as writer:
        writer.write(Full(), memoryview(b"a\n"))
        writer.write(Full(), memoryview(b"b\n"))
    kept = io.BytesIO()
    with pytest.raises(ValueError, match="stopped"), files._Writer() as writer:
        writer.write(kept, memoryview(b"a\n"))
        raise ValueError("stopped")
    assert kept.getvalue() == b"", "a change that failed leaves its held chunk unwritten"
