"""The mediarithmics client against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators._server import Faults
from emulators.mediarithmics import MediarithmicsEmulator
from segops.destinations import MemberRow, Sent
from segops.destinations.http import RetryPolicy
from segops.destinations.mediarithmics import api as api_module
from segops.destinations.mediarithmics.batches import BatchLimits, iter_batches
from segops.destinations.mediarithmics.destination import (
    MediarithmicsOptions,
    make_mediarithmics_client,
)
from segops.destinations.mediarithmics.executions import PollSettings
from segops.errors import DestinationError
from segops.model import Connection, Platform, Scalar
from tests.destinations.rules import check_command, parse_csv, parse_ndjson
from tests.emulators.fixtures_mediarithmics import (
    ADDRESS,
    TOKEN,
    change,
    close_clients,
    destination,
    indexed,
    keys,
    settings,
    uploads,
)

CART = ("segment_technical_name", "cart")


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    close_clients()


@pytest.fixture
def emulator() -> Iterator[MediarithmicsEmulator]:
    with MediarithmicsEmulator(TOKEN, datamarts={"1509", "1510"}, process_delay=0.005) as emu:
        yield emu


def adds(members: list[str], bag: str | None = None) -> list[MemberRow]:
    return [MemberRow("add", k, bag) for k in members]


def emails(members: list[str]) -> set[tuple[str, ...]]:
    return {("email_hash", k) for k in members}


def test_adds_removes_and_updates_end_in_exact_membership(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    dest, journal, _ = destination(emulator, tmp_path)
    first = keys("m", 10)
    result = dest.apply(change(None, settings(), delta_sha="1" * 64), indexed(adds(first)))
    assert result.ok and result.confirmed is None and result.sent == Sent(add=10)
    assert emulator.members("1509") == {CART: emails(first)}

    rows = (
        [MemberRow("remove", k) for k in first[:3]]
        + adds(["n1", "n2"])
        + [MemberRow("update", first[3], '{"tier":"gold"}', 1767225600000)]
    )
    second = change(settings(), settings(), attributes=("data_bag", "expiration_ts"))
    result = dest.apply(second, indexed(rows))
    assert result.ok, result.message
    assert result.sent == Sent(add=2, remove=3, update=1)
    assert emulator.members("1509") == {CART: emails(first[3:] + ["n1", "n2"])}
    attrs = emulator.member_attributes("1509")[CART][("email_hash", first[3])]
    assert attrs == {
        "expiration_duration": 10080,
        "expiration_ts": 1767225600000,
        "data_bag": '{"tier":"gold"}',
    }
    assert [e["status"] for e in journal.operations(ADDRESS)] == ["confirmed", "confirmed"]
    trail = [json.loads(x) for x in journal.path.read_text().splitlines()]
    steps = [e["status"] for e in trail if e.get("op", "").endswith(f":{'d' * 16}:0-6")]
    assert steps == ["intent", "accepted", "confirmed"]
    assert {"import_id", "execution_id", "datamart_id"} <= set(trail[-1])
    for request in uploads(emulator):
        assert request.headers["authorization"] == TOKEN  # the raw token, no Bearer
        assert request.headers["content-type"] == "application/x-ndjson"
        for command in parse_ndjson(request.body.decode()):
            check_command(command)


def test_batches_by_lines_make_several_executions_whose_union_is_exact(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    dest, journal, _ = destination(emulator, tmp_path, batch_lines=10)
    members = keys("k", 25)
    result = dest.apply(change(None, settings()), indexed(adds(members)))
    assert result.ok and result.sent == Sent(add=25), result.message
    assert len(uploads(emulator)) == 3
    assert sorted(len(parse_ndjson(r.body.decode())) for r in uploads(emulator)) == [5, 10, 10]
    assert emulator.members("1509") == {CART: emails(members)}
    ops = sorted(e["op"] for e in journal.operations(ADDRESS))
    assert ops == [f"mics:{ADDRESS}:{'d' * 16}:{r}" for r in ("0-10", "10-20", "20-25")]
    assert "3 of 3 executions confirmed" in result.message


def test_batches_by_bytes_stay_under_the_bound(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    dest, _, _ = destination(emulator, tmp_path, batch_bytes=1024)
    members = [f"{i:064x}" for i in range(40)]
    result = dest.apply(change(None, settings()), indexed(adds(members)))
    assert result.ok, result.message
    sizes = [len(r.body) for r in uploads(emulator)]
    assert len(sizes) > 3 and max(sizes) <= 1024
    assert emulator.members("1509") == {CART: emails(members)}


def test_csv_connection_uploads_text_csv_with_a_header(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    dest, _, _ = destination(emulator, tmp_path, mime_type="TEXT_CSV", batch_lines=3)
    rows = adds(["a1", "a2"], '{"basket":"caf\\u00e9, \\"x\\""}') + adds(["a3", "a4"])
    target = settings(**{"identifier.kind": "user_account_id", "compartment_id": "12"})
    result = dest.apply(change(None, target, attributes=("data_bag",)), indexed(rows))
    assert result.ok, result.message
    bodies = [r.body.decode() for r in uploads(emulator)]
    assert all(r.headers["content-type"] == "text/csv" for r in uploads(emulator))
    assert len(bodies) == 2
    for body in bodies:
        header, _ = parse_csv(body)  # checks every command line too
        assert header == [
            "operation",
            "expiration_duration",
            "user_account_id",
            "compartment_id",
            "segment_technical_name",
            "data_bag",
        ]
    members = emulator.member_attributes("1509")[CART]
    assert set(members) == {("user_account_id", k, "12") for k in ("a1", "a2", "a3", "a4")}
    assert json.loads(members[("user_account_id", "a1", "12")]["data_bag"]) == {
        "basket": 'caf\u00e9, "x"'
    }


def test_document_import_is_created_once_and_remembered(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    dest, journal, _ = destination(emulator, tmp_path, run="run-1")
    assert dest.apply(change(None, settings(), delta_sha="1" * 64), indexed(adds(["a"]))).ok
    again, _, _ = destination(emulator, tmp_path, run="run-2")  # a later apply, same journal file
    assert again.apply(change(settings(), settings(), delta_sha="2" * 64), indexed(adds(["b"]))).ok
    creations = [
        r
        for r in emulator.server.requests
        if r.method == "POST" and r.path.endswith("/document_imports")
    ]
    assert len(creations) == 1
    body = creations[0].json()
    assert body == {
        "document_type": "USER_SEGMENT",
        "mime_type": "APPLICATION_X_NDJSON",
        "encoding": "utf-8",
        "name": "segops mics run-1",
    }
    import_id = journal.resources["mediarithmics/mics/1509/APPLICATION_X_NDJSON"]
    assert {e["parameters"]["document_import_id"] for e in emulator.executions()} == {import_id}


def test_a_remembered_import_that_is_gone_is_created_again(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    dest, journal, _ = destination(emulator, tmp_path)
    journal.put_resource("mediarithmics/mics/1509/APPLICATION_X_NDJSON", "999999")
    result = dest.apply(change(None, settings()), indexed(adds(["a", "b"])))
    assert result.ok, result.message
    assert journal.resources["mediarithmics/mics/1509/APPLICATION_X_NDJSON"] != "999999"
    assert emulator.members("1509") == {CART: emails(["a", "b"])}


def test_recreate_across_datamarts_sends_removes_and_adds_to_each(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    dest, journal, _ = destination(emulator, tmp_path)
    old = settings(segment_technical_name="old")
    assert dest.apply(change(None, old, delta_sha="1" * 64), indexed(adds(["a", "b"]))).ok
    new = settings(datamart_id="1510", segment_id="77", segment_technical_name=None)
    rows = [MemberRow("remove", "a"), MemberRow("remove", "b")] + adds(["a", "b", "c"])
    result = dest.apply(change(old, new), indexed(rows))
    assert result.ok and result.sent == Sent(add=3, remove=2), result.message
    assert emulator.members("1509") == {}
    assert emulator.members("1510") == {("segment_id", "77"): emails(["a", "b", "c"])}
    assert set(journal.resources) == {
        f"mediarithmics/mics/{d}/APPLICATION_X_NDJSON" for d in ("1509", "1510")
    }


def test_resume_polls_accepted_executions_without_uploading_again(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    # The first apply gives up waiting before the platform is done; its wait (0.3 s) is long
    # enough for one poll's answer on a busy machine, so it is the platform that is late.
    emulator.process_delay = 1.0
    dest, journal, _ = destination(
        emulator, tmp_path, batch_lines=5, poll_timeout=0.3, poll_interval=0.01
    )
    members = keys("k", 10)
    first = dest.apply(change(None, settings()), indexed(adds(members)))
    assert not first.ok and first.confirmed == ()
    assert "2 unconfirmed" in first.message and "still PENDING after 0.3 s" in first.message
    assert [e["status"] for e in journal.operations(ADDRESS)] == ["accepted", "accepted"]
    assert len(uploads(emulator)) == 2

    emulator.process_delay = 0.005
    resumed, _, _ = destination(emulator, tmp_path, batch_lines=5, poll_interval=0.01)
    result = resumed.apply(change(None, settings()), indexed(adds(members)))
    assert result.ok, result.message
    assert len(uploads(emulator)) == 2  # polled, not sent again
    assert result.sent == Sent()  # nothing was sent by this apply
    assert emulator.members("1509") == {CART: emails(members)}

    before = len(emulator.server.requests)
    third, _, _ = destination(emulator, tmp_path, batch_lines=5)
    assert third.apply(change(None, settings()), indexed(adds(members))).ok
    assert len(emulator.server.requests) == before  # confirmed batches need no call at all


def test_partial_failure_keeps_the_batch_out_and_names_the_error_file(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    secret_member = "k00012"
    emulator.reject = lambda c: "unknown user" if c.get("email_hash") == secret_member else None
    dest, journal, _ = destination(emulator, tmp_path, batch_lines=10)
    result = dest.apply(change(None, settings()), indexed(adds(keys("k", 25))))
    assert not result.ok
    assert result.confirmed == ((0, 10), (20, 25))
    assert "2 of 3 executions confirmed, 1 failed" in result.message
    assert "rows 10-20" in result.message and "1 of 10 lines rejected" in result.message
    failed = [e for e in journal.operations(ADDRESS) if e["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["total_failure"] == 1 and failed[0]["total_success"] == 9
    uri = failed[0]["error_file_uri"]
    assert uri.startswith(emulator.base_url) and uri in result.message
    assert secret_member not in result.message
    text = journal.path.read_text()
    assert secret_member not in text and TOKEN not in text


def test_failed_execution_does_not_stop_the_other_batches(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    emulator.fail_next_executions = 1
    dest, journal, _ = destination(emulator, tmp_path, batch_lines=3, concurrency=1)
    result = dest.apply(change(None, settings()), indexed(adds(keys("k", 6))))
    assert not result.ok and result.confirmed == ((3, 6),)
    assert "ended FAILED" in result.message and "rows 0-3" in result.message
    assert result.sent == Sent(add=6)
    assert emulator.members("1509") == {CART: emails(keys("k", 6)[3:])}
    statuses = {e["op"].rsplit(":", 1)[1]: e["status"] for e in journal.operations(ADDRESS)}
    assert statuses == {"0-3": "failed", "3-6": "confirmed"}

    retry, _, _ = destination(emulator, tmp_path, batch_lines=3)
    assert retry.apply(change(None, settings()), indexed(adds(keys("k", 6)))).ok
    assert emulator.members("1509") == {CART: emails(keys("k", 6))}
    assert len(uploads(emulator)) == 3  # only the failed batch was sent again


@pytest.mark.parametrize(
    "faults",
    [Faults(error_rate=0.3, seed=7), Faults(throttle_every=3, retry_after=1)],
    ids=["error_rate", "throttle"],
)
def test_faults_still_converge(faults: Faults, tmp_path: Path) -> None:
    with MediarithmicsEmulator(TOKEN, faults=faults, process_delay=0.005) as emulator:
        dest, _, _ = destination(emulator, tmp_path, batch_lines=4, concurrency=3)
        members = keys("k", 30)
        result = dest.apply(change(None, settings()), indexed(adds(members)))
        assert result.ok, result.message
        assert emulator.members("1509") == {CART: emails(members)}
        statuses = [r.path for r in emulator.server.requests]
        assert len(statuses) > len(uploads(emulator))


def test_wrong_token_is_a_clear_error_without_the_token(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    wrong = "wrong-token-1234"
    dest, journal, _ = destination(emulator, tmp_path, token=wrong, batch_lines=2)
    result = dest.apply(change(None, settings()), indexed(adds(keys("k", 6))))
    assert not result.ok and result.confirmed == () and result.sent == Sent()
    assert "HTTP 401" in result.message and "token was refused" in result.message
    assert "2 not sent" in result.message and "stopped:" in result.message
    assert wrong not in result.message and TOKEN not in result.message
    assert wrong not in journal.path.read_text()
    assert emulator.executions() == []


def test_without_single_get_the_client_pages_through_the_list(
    emulator: MediarithmicsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.single_get = False
    monkeypatch.setattr(api_module, "PAGE_SIZE", 1)
    dest, _, _ = destination(emulator, tmp_path, batch_lines=2, concurrency=2)
    members = keys("k", 8)
    result = dest.apply(change(None, settings()), indexed(adds(members)))
    assert result.ok, result.message
    assert emulator.members("1509") == {CART: emails(members)}
    lists = [
        r for r in emulator.server.requests if r.method == "GET" and r.path.endswith("/executions")
    ]
    assert any(r.query.get("first_result") == ["1"] for r in lists)
    singles = [
        r for r in emulator.server.requests if r.method == "GET" and "/executions/" in r.path
    ]
    assert 1 <= len(singles) <= 2  # tried by the first polls in flight, then the list only


def test_no_more_than_concurrency_executions_in_flight(
    emulator: MediarithmicsEmulator, tmp_path: Path
) -> None:
    emulator.process_delay = 0.02
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            running = [e for e in emulator.executions() if e["status"] in ("PENDING", "RUNNING")]
            peak = max(peak, len(running))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        dest, _, _ = destination(emulator, tmp_path, batch_lines=2, concurrency=2)
        assert dest.apply(change(None, settings()), indexed(adds(keys("k", 12)))).ok
    finally:
        done.set()
        sampler.join()
    assert 1 <= peak <= 2


def test_empty_delta_sends_nothing(emulator: MediarithmicsEmulator, tmp_path: Path) -> None:
    dest, _, _ = destination(emulator, tmp_path)
    result = dest.apply(change(None, settings()), indexed([]))
    assert result.ok and result.sent == Sent() and emulator.server.requests == []


def test_batches_are_built_lazily_one_at_a_time() -> None:
    taken = 0

    def rows() -> Iterator[MemberRow]:
        nonlocal taken
        for i in range(50_000):
            taken += 1
            yield MemberRow("add", f"{i:064x}", None, None, i)

    limits = BatchLimits(lines=10_000, bytes=50_000_000)
    spans = []
    for n, batch in enumerate(
        iter_batches(change(None, settings()), rows(), "APPLICATION_X_NDJSON", limits)
    ):
        assert taken <= (n + 1) * 10_000 + 4096  # at most one chunk read ahead
        spans.append((batch.start, batch.end))
    assert spans == [(i, i + 10_000) for i in range(0, 50_000, 10_000)]


def test_batch_bounds_and_errors() -> None:
    rows = adds(["x" * 2000])
    with pytest.raises(DestinationError, match="more than batch_bytes 1024"):
        list(
            iter_batches(
                change(None, settings()),
                iter(indexed(rows)()),
                "APPLICATION_X_NDJSON",
                BatchLimits(bytes=1024),
            )
        )
    with pytest.raises(DestinationError, match="batch_bytes"):
        BatchLimits(bytes=200_000_000)
    removes = [MemberRow("remove", "a", None, None, 0)]
    with pytest.raises(DestinationError, match="no settings"):
        list(iter_batches(change(None, settings()), removes, "APPLICATION_X_NDJSON", BatchLimits()))
    gap = [MemberRow("add", "a", None, None, 0), MemberRow("add", "b", None, None, 5)]
    spans = [
        (b.start, b.end)
        for b in iter_batches(change(None, settings()), gap, "TEXT_CSV", BatchLimits())
    ]
    assert spans == [(0, 1), (5, 6)]  # a batch is always one contiguous range


def test_client_factory_and_options() -> None:
    bare = Connection("m", Platform.MEDIARITHMICS, Platform.MEDIARITHMICS)
    with make_mediarithmics_client(bare, TOKEN, RetryPolicy()) as client:
        assert str(client.base_url) == "https://api.mediarithmics.com"
        assert client.headers["Authorization"] == TOKEN  # raw, no Bearer
    assert MediarithmicsOptions.from_connection(bare) == MediarithmicsOptions(
        "APPLICATION_X_NDJSON", BatchLimits(500_000, 50_000_000), 2, PollSettings(1.0, 3600.0)
    )
    options: dict[str, Scalar] = {
        "mime_type": "TEXT_CSV",
        "batch_lines": 10,
        "batch_bytes": 2048,
        "concurrency": 4,
        "poll_interval": 0.5,
        "poll_timeout": 60,
    }
    conn = Connection(
        "m", Platform.MEDIARITHMICS, Platform.MEDIARITHMICS, tuple(sorted(options.items()))
    )
    assert MediarithmicsOptions.from_connection(conn) == MediarithmicsOptions(
        "TEXT_CSV", BatchLimits(10, 2048), 4, PollSettings(0.5, 60.0)
    )
