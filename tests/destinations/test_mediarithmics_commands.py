from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator

import pytest

from segops.destinations import MemberRow
from segops.destinations.mediarithmics import commands as mics
from segops.errors import DestinationError
from tests.destinations.rules import parse_csv, parse_ndjson

H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64


def target(**extra: object) -> mics.CommandTarget:
    settings = {
        "connection": "mics",
        "datamart_id": "1509",
        "expiration_duration": 10080,
        "identifier.kind": "email_hash",
        "segment_technical_name": "cart",
        **extra,
    }
    return mics.CommandTarget.from_settings(tuple(sorted(settings.items())))  # type: ignore[arg-type]


ROWS = [
    MemberRow("remove", H1, '{"old":true}', 5),  # a DELETE drops both attributes
    MemberRow("add", H2, '{"basket":"caf\u00e9 \\"x\\", y","n":2}', 1767225600000),
    MemberRow("add", H3),
    MemberRow("update", "d" * 64, "{}", None),
]


def test_ndjson_lines_follow_the_field_rules_line_by_line() -> None:
    text = "".join(mics.ndjson_lines(target(), ROWS))
    commands = parse_ndjson(text)

    assert [c["operation"] for c in commands] == ["DELETE", "UPDATE", "UPDATE", "UPDATE"]
    assert all(c["expiration_duration"] == 10080 for c in commands)
    assert all(c["segment_technical_name"] == "cart" for c in commands)
    assert commands[0] == {
        "operation": "DELETE",
        "expiration_duration": 10080,
        "email_hash": H1,
        "segment_technical_name": "cart",
    }
    assert json.loads(commands[1]["data_bag"]) == {"basket": 'caf\u00e9 "x", y', "n": 2}
    assert commands[1]["expiration_ts"] == 1767225600000
    assert "data_bag" not in commands[2] and "expiration_ts" not in commands[2]
    assert commands[3]["data_bag"] == "{}"


def test_ndjson_keeps_non_ascii_as_utf8() -> None:
    line = next(mics.ndjson_lines(target(), [MemberRow("add", "k", '{"v":"\u00e9\u4e2d"}')]))
    assert "\u00e9\u4e2d" in line and "\\u" not in line


@pytest.mark.parametrize(
    ("extra", "identifier"),
    [
        ({}, {"email_hash": "k1"}),
        ({"identifier.kind": "user_agent_id"}, {"user_agent_id": "k1"}),
        (
            {"identifier.kind": "user_account_id", "compartment_id": "12"},
            {"user_account_id": "k1", "compartment_id": "12"},
        ),
    ],
)
@pytest.mark.parametrize(
    ("ref", "value"), [("segment_technical_name", "cart"), ("segment_id", "42")]
)
def test_one_identifier_and_one_segment_reference_per_line(
    extra: dict[str, object], identifier: dict[str, str], ref: str, value: str
) -> None:
    settings = {**extra, "segment_technical_name": None, ref: value}
    lines = list(
        mics.ndjson_lines(target(**settings), [MemberRow("add", "k1"), MemberRow("remove", "k2")])
    )
    add, remove = parse_ndjson("".join(lines))
    assert add == {"operation": "UPDATE", "expiration_duration": 10080, **identifier, ref: value}
    assert remove["operation"] == "DELETE" and ref in remove


def test_csv_file_parses_with_its_header_and_follows_the_rules() -> None:
    columns = mics.csv_columns(target(), expiration_ts=True, data_bag=True)
    text = "".join(mics.csv_lines(target(), ROWS, columns))
    header, commands = parse_csv(text)

    assert header == [
        "operation",
        "expiration_duration",
        "expiration_ts",
        "email_hash",
        "segment_technical_name",
        "data_bag",
    ]
    assert [c["operation"] for c in commands] == ["DELETE", "UPDATE", "UPDATE", "UPDATE"]
    assert commands == parse_ndjson("".join(mics.ndjson_lines(target(), ROWS)))


def test_csv_columns_are_fixed_per_file() -> None:
    account = target(
        **{
            "identifier.kind": "user_account_id",
            "compartment_id": "12",
            "segment_technical_name": None,
            "segment_id": "7",
        }
    )
    assert mics.csv_columns(account, expiration_ts=False, data_bag=False) == (
        "operation",
        "expiration_duration",
        "user_account_id",
        "compartment_id",
        "segment_id",
    )
    text = "".join(
        mics.csv_lines(
            account,
            [MemberRow("add", "crm,42")],
            mics.csv_columns(account, expiration_ts=False, data_bag=False),
        )
    )
    assert text == (
        "operation,expiration_duration,user_account_id,compartment_id,segment_id\n"
        'UPDATE,10080,"crm,42",12,7\n'
    )


@pytest.mark.parametrize(
    "key", ["plain", "with,comma", 'with"quote', "with\nnewline", "caf\u00e9", " spaced "]
)
def test_csv_lines_equal_what_csv_writer_writes(key: str) -> None:
    columns = mics.csv_columns(target(), expiration_ts=True, data_bag=True)
    rows = [MemberRow("add", key, '{"a":"b,c"}', 12), MemberRow("remove", key)]
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    writer.writerow(columns)
    writer.writerow(["UPDATE", 10080, 12, key, "cart", '{"a":"b,c"}'])
    writer.writerow(["DELETE", 10080, None, key, "cart", None])
    assert "".join(mics.csv_lines(target(), rows, columns)) == expected.getvalue()


def test_csv_quotes_a_carriage_return_which_csv_writer_would_not() -> None:
    # csv.writer with lineterminator "\n" leaves "\r" unquoted, which readers take as a line end.
    columns = mics.csv_columns(target(), expiration_ts=False, data_bag=False)
    text = "".join(mics.csv_lines(target(), [MemberRow("add", "a\rb")], columns))
    assert list(csv.DictReader(io.StringIO(text, newline="")))[0]["email_hash"] == "a\rb"


def test_csv_without_a_column_for_a_row_value_is_refused() -> None:
    columns = mics.csv_columns(target(), expiration_ts=False, data_bag=False)
    with pytest.raises(DestinationError, match="data_bag"):
        list(mics.csv_rows(target(), [MemberRow("add", "k", "{}")], columns))
    # a DELETE never carries them, so a removes-only file needs no such column
    assert list(mics.csv_rows(target(), [MemberRow("remove", "k", "{}", 3)], columns)) == [
        "DELETE,10080,k,cart\n"
    ]


def test_unknown_operation_is_refused() -> None:
    for lines in (
        mics.ndjson_lines(target(), [MemberRow("upsert", "k")]),
        mics.command_lines(target(), [MemberRow("upsert", "k")], mics.CSV, ("x",)),
    ):
        with pytest.raises(DestinationError, match="upsert"):
            list(lines)


def test_lines_stream_from_an_endless_iterator() -> None:
    def endless() -> Iterator[MemberRow]:
        for i in itertools.count():
            yield MemberRow("add", f"{i:064x}")

    columns = mics.csv_columns(target(), expiration_ts=False, data_bag=False)
    for mime, cols in ((mics.NDJSON, None), (mics.CSV, columns)):
        first = list(itertools.islice(mics.command_lines(target(), endless(), mime, cols), 3))
        assert len(first) == 3 and all(line.endswith("\n") for line in first)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"segment_id": "1"}, "exactly one"),
        ({"segment_technical_name": None}, "exactly one"),
        ({"expiration_duration": -1}, "expiration_duration"),
        ({"expiration_duration": True}, "expiration_duration"),
        ({"expiration_duration": "10"}, "expiration_duration"),
        ({"identifier.kind": "attribute"}, "identifier.kind"),
        ({"identifier.kind": "user_account_id"}, "compartment_id"),
        ({"datamart_id": None}, "datamart_id"),
    ],
)
def test_bad_settings_are_refused(extra: dict[str, object], message: str) -> None:
    with pytest.raises(DestinationError, match=message):
        target(**extra)


def test_default_expiration_duration_is_zero_and_compartment_only_with_accounts() -> None:
    settings = (
        ("datamart_id", "1"),
        ("identifier.kind", "email_hash"),
        ("segment_id", "2"),
        ("compartment_id", "9"),
    )
    t = mics.CommandTarget.from_settings(settings)
    assert t.expiration_duration == 0 and t.compartment_id is None
    assert t.identifier_fields == ("email_hash",)


def test_document_import_body() -> None:
    assert mics.document_import_body(mics.CSV, "segops run") == {
        "document_type": "USER_SEGMENT",
        "mime_type": "TEXT_CSV",
        "encoding": "utf-8",
        "name": "segops run",
    }
    with pytest.raises(DestinationError, match="mime_type"):
        mics.document_import_body("application/json", "x")
