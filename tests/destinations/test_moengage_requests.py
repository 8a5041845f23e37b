from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from segops.destinations.moengage import requests as moe
from segops.errors import DestinationError
from tests.destinations.rules import body_validator, check_member_file, check_request_body

URL = "https://bucket.s3.amazonaws.com/segops/add.csv?X-Amz-Signature=abc"
SEGMENT = moe.FileSegment("cart_abandoners_7d", "email", "string", expiry_days=30)


def settings(**extra: object) -> tuple[tuple[str, object], ...]:
    values = {
        "connection": "moe-eu",
        "segment.name": "cart",
        "attribute.name": "email",
        "attribute.type": "string",
        **extra,
    }
    return tuple(sorted(values.items()))


@pytest.mark.parametrize("operation", list(moe.ENDPOINTS))
@pytest.mark.parametrize("segment", [SEGMENT, moe.FileSegment("s", "ID", "double", cs_id="6a1d8")])
@pytest.mark.parametrize("callback", [None, "https://example.com/moengage-callback"])
def test_every_body_validates_against_its_operation_schema(
    operation: str, segment: moe.FileSegment, callback: str | None
) -> None:
    method, path = moe.ENDPOINTS[operation]
    body = moe.request_body(operation, segment, URL, callback)
    check_request_body(method, path, body)
    assert body["file_url"] == URL and ("callback_url" in body) == (callback is not None)


def test_the_schema_check_is_live() -> None:
    method, path = moe.ENDPOINTS[moe.CREATE]
    body = moe.create_body(SEGMENT, URL)
    validator = body_validator(method, path)
    assert validator.is_valid(body)
    assert not validator.is_valid({k: v for k, v in body.items() if k != "expiry_time"})
    assert not validator.is_valid({**body, "attribute_type": "int"})
    assert not validator.is_valid({**body, "expiry_time": "30"})
    update_method, update_path = moe.ENDPOINTS[moe.ADD_USERS]
    assert not body_validator(update_method, update_path).is_valid(
        {k: v for k, v in body.items() if k != "file_url"}
    )


def test_create_body_sends_expiry_days_and_never_cs_id() -> None:
    segment = moe.FileSegment("s", "email", "string", cs_id="6a1d", expiry_days=90)
    assert moe.create_body(segment, URL) == {
        "name": "s",
        "attribute_name": "email",
        "attribute_type": "string",
        "file_url": URL,
        "expiry_time": 90,
    }


def test_update_bodies_send_cs_id_when_known() -> None:
    segment = moe.FileSegment("s", "email", "string", cs_id="6a1d")
    for operation in (moe.ADD_USERS, moe.REMOVE_USERS, moe.REPLACE):
        body = moe.request_body(operation, segment, URL)
        assert body == {
            "name": "s",
            "attribute_name": "email",
            "attribute_type": "string",
            "file_url": URL,
            "cs_id": "6a1d",
        }
    assert "cs_id" not in moe.update_body(SEGMENT, URL)


def test_endpoints() -> None:
    assert moe.ENDPOINTS == {
        "create": ("POST", "/v2/custom-segments/file-segment"),
        "add-users": ("PUT", "/v2/custom-segments/file-segment/add-users"),
        "remove-users": ("PUT", "/v2/custom-segments/file-segment/remove-users"),
        "replace": ("PUT", "/v2/custom-segments/file-segment/replace"),
    }
    with pytest.raises(DestinationError, match="archive"):
        moe.request_body("archive", SEGMENT, URL)


def test_segment_from_settings() -> None:
    segment = moe.FileSegment.from_settings(settings(**{"segment.cs_id": "6a", "expiry_days": 7}))  # type: ignore[arg-type]
    assert segment == moe.FileSegment("cart", "email", "string", "6a", 7)
    assert moe.FileSegment.from_settings(settings()).expiry_days == 365  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"segment.name": None}, "segment.name"),
        ({"attribute.name": ""}, "attribute.name"),
        ({"attribute.type": "int"}, "attribute.type"),
        ({"expiry_days": 0}, "expiry_days"),
        ({"expiry_days": 2**31}, "expiry_days"),
    ],
)
def test_bad_segment_settings_are_refused(extra: dict[str, object], message: str) -> None:
    with pytest.raises(DestinationError, match=message):
        moe.FileSegment.from_settings(settings(**extra))  # type: ignore[arg-type]


def parts(keys: list[str], max_bytes: int) -> list[bytes]:
    files: list[bytes] = []
    for chunk in moe.csv_chunks(keys, max_bytes):
        if chunk.part == len(files):
            files.append(b"")
        assert chunk.part == len(files) - 1, "parts come in order"
        assert chunk.rows == chunk.data.count(b"\n")
        files[chunk.part] += chunk.data
    return files


def test_member_file_is_one_column_without_header_or_quotes() -> None:
    keys = ["a@example.com", "b@example.com", "caf\u00e9@example.com"]
    (data,) = parts(keys, moe.MAX_FILE_BYTES)
    assert data == "a@example.com\nb@example.com\ncaf\u00e9@example.com\n".encode()
    assert check_member_file(data) == keys  # the first line is a member, not a header


def test_member_files_split_before_the_byte_limit() -> None:
    keys = [f"user-{i}" for i in range(100_000)]  # more than one internal batch
    files = parts(keys, 100_000)
    assert len(files) > 1
    values = [v for data in files for v in check_member_file(data, 100_000)]
    assert values == keys
    assert all(len(data) > 100_000 - 20 for data in files[:-1]), "parts are filled"


def test_a_key_that_exactly_fills_a_part() -> None:
    files = parts(["aaaa", "bbbb", "cc"], 10)  # "aaaa\nbbbb\n" is 10 bytes
    assert files == [b"aaaa\nbbbb\n", b"cc\n"]
    assert parts(["abcd"], 5) == [b"abcd\n"]
    assert parts([], 5) == []


def test_a_key_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(DestinationError, match="longer than the 5-byte"):
        parts(["ab", "abcdefgh"], 5)


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("a,b", "a comma"),
        ('"a"', "a quote"),
        ("a\nb", "a line break"),
        ("a\rb", "a line break"),
        ("a#bc", "a '#'"),
        ("", "empty"),
    ],
)
@pytest.mark.parametrize("position", [0, 1, 70_000])
def test_keys_the_file_rules_forbid_are_refused_by_position(
    key: str, what: str, position: int
) -> None:
    keys = [f"user-{i}" for i in range(70_001)]
    keys[position] = key
    with pytest.raises(DestinationError, match=f"#{position + 1} .*{what}") as caught:
        list(moe.csv_chunks(keys))
    assert key == "" or key not in str(caught.value), "errors never show a member key"


def test_chunks_stream_from_an_endless_iterator() -> None:
    def endless() -> Iterator[str]:
        for i in itertools.count():
            yield f"user-{i}"

    first = list(itertools.islice(moe.csv_chunks(endless(), 1_000), 3))
    assert [c.part for c in first] == [0, 1, 2]
