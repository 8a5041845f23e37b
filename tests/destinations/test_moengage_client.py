"""The MoEngage destination end to end: real HTTP on 127.0.0.1 against the emulator.

Files are published by segops' HTTP publisher or to moto's S3 server; the journal is a real
FileJournal; time is a fake clock whose sleeps advance it (and yield briefly to threads).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from emulators._server import Faults
from emulators.moengage import MoEngageEmulator
from segops.apply.journal import FileJournal, JournalResources
from segops.destinations import ApplyContext, ApplyResult, MemberRow
from segops.destinations.http import RetryPolicy
from segops.destinations.moengage.callbacks import CallbackReceiver
from segops.destinations.moengage.destination import MoEngageDestination, make_moengage_client
from segops.destinations.moengage.operations import op_id, strategy_for
from segops.destinations.moengage.platform import PLATFORM, ledger_name
from segops.destinations.moengage.publish import HttpPublisher, Published, Publisher, S3Publisher
from segops.destinations.moengage.quota import QuotaLedger, QuotaLimits, eta_text
from segops.errors import DestinationError
from segops.model import (
    Action,
    Connection,
    DeltaFile,
    DestinationChange,
    KeyEncoding,
    MemberCounts,
    Platform,
    Scalar,
    Settings,
)
from segops.state.records import FileRecords
from tests.destinations.rules import check_member_file, check_request_body
from tests.s3server import S3Server, s3_server

WORKSPACE, API_KEY = "ws-test-1", "secret-api-key-1"
T0 = 1_800_000_000.0
BUCKET = "segops-moe-files"


class FakeClock:
    """Epoch time that sleeps advance; each sleep also yields to the servers' threads."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        time.sleep(min(seconds, 0.01))


class RecordingPublisher:
    """A publisher wrapper keeping what was published (to check files) and what is left."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.files: list[bytes] = []
        self.live: set[str] = set()

    def publish(self, name: str, data: bytes) -> Published:
        published = self.inner.publish(name, data)
        self.files.append(data)
        self.live.add(published.key)
        return published

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        self.live.discard(key)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> RecordingPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[MoEngageEmulator]:
    with MoEngageEmulator(WORKSPACE, API_KEY, clock=clock, process_delay=0.01) as emulator:
        yield emulator


@pytest.fixture(params=["http", "s3"])
def publisher(request: pytest.FixtureRequest) -> Iterator[RecordingPublisher]:
    if request.param == "http":
        inner: Publisher = HttpPublisher()
    else:
        server: S3Server = request.getfixturevalue("s3")
        inner = S3Publisher(BUCKET, prefix=f"t/{uuid.uuid4().hex}/", client=server.client())
    with RecordingPublisher(inner) as recording:
        yield recording


@dataclass
class Harness:
    """One workspace's MoEngage connection: journal, ledger, receiver, destination factory."""

    tmp: Path
    clock: FakeClock
    emulator: MoEngageEmulator
    publisher: RecordingPublisher
    options: dict[str, Scalar] = field(default_factory=dict)
    receiver: CallbackReceiver | None = None
    api_key: str = API_KEY
    max_file_bytes: int = 140_000_000
    records: bool = True  # False: a kill before the state was written

    @property
    def journal(self) -> FileJournal:
        return FileJournal(self.tmp / "journal.jsonl")

    def connection(self) -> Connection:
        options = {"base_url": self.emulator.base_url, **self.options}
        if self.receiver is not None:
            options.setdefault("callback.wait", 30)
        return Connection(
            "moe", Platform.MOENGAGE, Platform.MOENGAGE, tuple(sorted(options.items()))
        )

    def apply(self, change: DestinationChange, rows: list[MemberRow]) -> ApplyResult:
        connection = self.connection()
        policy = RetryPolicy(max_attempts=6, base_delay=0.01, deadline=60, timeout=10)
        journal = self.journal
        context = ApplyContext(
            journal, JournalResources(journal), "run", self.clock.sleep, self.clock
        )
        limits = QuotaLimits.from_connection(connection)
        ledger = QuotaLedger(FileRecords(self.tmp), "ledger.json", limits)
        with make_moengage_client(connection, WORKSPACE, self.api_key, policy) as client:
            destination = MoEngageDestination(
                connection, client, context, policy, self.publisher, ledger, self.receiver,
                max_file_bytes=self.max_file_bytes,
            )  # fmt: skip
            result = destination.apply(change, lambda: iter(rows))
        if self.receiver is None:
            assert self.emulator.wait_idle()  # MoEngage downloads after the 202
        if self.records and (result.ok or result.confirmed):
            journal.forget(change.address)  # as segops.apply.loop does once it wrote the state
        return result


@pytest.fixture
def harness(
    tmp_path: Path, clock: FakeClock, emulator: MoEngageEmulator, publisher: RecordingPublisher
) -> Iterator[Harness]:
    with CallbackReceiver() as receiver:
        yield Harness(tmp_path, clock, emulator, publisher, receiver=receiver)


def settings(**extra: Scalar) -> Settings:
    values: dict[str, Scalar] = {
        "connection": "moe",
        "segment.name": "cart_7d",
        "attribute.name": "email",
        "attribute.type": "string",
        "expiry_days": 30,
        **extra,
    }
    return tuple(sorted((k, v) for k, v in values.items() if v is not None))


def change_of(
    before: Settings | None,
    after: Settings | None,
    removes: Iterable[str] = (),
    adds: Iterable[str] = (),
    address: str = "cart_7d.moe",
) -> tuple[DestinationChange, list[MemberRow]]:
    """Return a change and its delta rows (removes, then adds), as the planner would."""
    rows = [MemberRow("remove", k) for k in sorted(removes)] + [
        MemberRow("add", k) for k in sorted(adds)
    ]
    rows = [MemberRow(r.op, r.key, index=i) for i, r in enumerate(rows)]
    digest = hashlib.sha256(json.dumps([(r.op, r.key) for r in rows]).encode()).hexdigest()
    n_remove = sum(r.op == "remove" for r in rows)
    if before is None:
        action = Action.CREATE
    elif after is None:
        action = Action.DESTROY
    else:
        action = Action.RECREATE if before != after else Action.UPDATE
    change = DestinationChange(
        address=address,
        segment=address.split(".")[0],
        connection="moe",
        platform=Platform.MOENGAGE,
        actions=(action,),
        settings_before=before,
        settings_after=after,
        setting_changes=(),
        members=MemberCounts(add=len(rows) - n_remove, remove=n_remove),
        delta=DeltaFile(digest, len(rows)),
        encoding=KeyEncoding.TEXT,
    )
    return change, rows


def leftover(
    change: DestinationChange, rows: list[MemberRow], result: ApplyResult
) -> tuple[DestinationChange, list[MemberRow]]:
    """Return the change the next plan makes once `result`'s confirmed rows are in state."""
    confirmed = result.confirmed or ()
    left = [r for r in rows if not any(s <= r.index < e for s, e in confirmed)]
    before, after = change.settings_before, change.settings_after
    recorded = result.ok or bool(result.confirmed)  # as segops.apply.loop records a result
    return change_of(
        after if recorded and after is not None else before,
        after,
        [r.key for r in left if r.op == "remove"],
        [r.key for r in left if r.op == "add"],
    )


def emails(n: int, start: int = 0) -> list[str]:
    return [f"user{i:05d}@example.com" for i in range(start, start + n)]


def api_requests(emulator: MoEngageEmulator) -> list[Any]:
    return [r for r in emulator.server.requests if r.path.startswith("/v2/")]


def check_requests(emulator: MoEngageEmulator) -> None:
    """Every request segops sent validates against the OpenAPI document, with our headers."""
    credentials = base64.b64encode(f"{WORKSPACE}:{API_KEY}".encode()).decode()
    for request in api_requests(emulator):
        check_request_body(request.method, request.path, request.json())
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"] == f"Basic {credentials}"
        assert request.headers["moe-appkey"] == WORKSPACE


def check_no_secrets(harness: Harness, *results: ApplyResult) -> None:
    journal = (harness.tmp / "journal.jsonl").read_text()
    for text in (journal, *(r.message + r.eta for r in results)):
        assert "http://" not in text and "https://" not in text
        assert API_KEY not in text and "@example.com" not in text
        assert "X-Amz" not in text and "Signature" not in text


# create, update, 409, recreate, destroy


def test_create_then_update_lands_exactly_the_desired_members(harness: Harness) -> None:
    change, rows = change_of(None, settings(), adds=emails(5))
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None and result.pending == 0, result.message
    assert result.sent.add == 5
    assert harness.emulator.segments() == {"cart_7d": set(emails(5))}

    change, rows = change_of(settings(), settings(), removes=emails(2), adds=emails(3, 5))
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert harness.emulator.segments() == {"cart_7d": set(emails(6, 2))}
    sent = [(r.method, r.path.rsplit("/", 1)[1]) for r in api_requests(harness.emulator)]
    assert sent == [("POST", "file-segment"), ("PUT", "remove-users"), ("PUT", "add-users")]
    # cs_id from the create's 202 is remembered and sent on later calls
    cs_id = harness.emulator.segment("cart_7d").cs_id  # type: ignore[union-attr]
    assert all(r.json()["cs_id"] == cs_id for r in api_requests(harness.emulator)[1:])
    assert harness.publisher.live == set(), "published files are deleted once confirmed"
    inner = harness.publisher.inner
    if isinstance(inner, S3Publisher):
        listing = inner._client.list_objects_v2(Bucket=BUCKET, Prefix=inner.prefix)
        assert listing["KeyCount"] == 0
    for data in harness.publisher.files:
        check_member_file(data)
    check_requests(harness.emulator)
    check_no_secrets(harness, result)


def _someone_elses_segment(harness: Harness) -> None:
    """Create MoEngage segment cart_7d with 2 members, then forget segops ever did."""
    first, first_rows = change_of(None, settings(), adds=emails(2), address="other.moe")
    assert harness.apply(first, first_rows).ok
    (harness.tmp / "journal.jsonl").unlink()  # forget the cs_id: only MoEngage knows the name


def test_create_of_an_existing_name_fails_naming_import(harness: Harness) -> None:
    _someone_elses_segment(harness)
    change, rows = change_of(None, settings(), adds=emails(3, 10))
    result = harness.apply(change, rows)
    assert not result.ok and result.confirmed == (), result.message
    assert "already exists" in result.message
    assert "segops import cart_7d.moe --members FILE" in result.message
    assert "on_existing: replace" in result.message
    statuses = [r.path.rsplit("/", 1)[1] for r in api_requests(harness.emulator)]
    assert statuses[1:] == ["file-segment"]  # no add-users: strangers are never kept silently
    harness.emulator.wait_idle()
    assert harness.emulator.segments() == {"cart_7d": set(emails(2))}
    check_no_secrets(harness, result)


def test_on_existing_replace_replaces_the_users_of_an_existing_segment(harness: Harness) -> None:
    _someone_elses_segment(harness)
    change, rows = change_of(None, settings(on_existing="replace"), adds=emails(3, 10))
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    statuses = [r.path.rsplit("/", 1)[1] for r in api_requests(harness.emulator)]
    assert statuses[1:] == ["file-segment", "replace"]
    harness.emulator.wait_idle()
    assert harness.emulator.segments() == {"cart_7d": set(emails(3, 10))}
    check_requests(harness.emulator)


def test_a_create_sent_before_is_filled_on_409(harness: Harness) -> None:
    """An earlier apply sent this very create (killed before its answer): the 409 is ours."""
    change, rows = change_of(None, settings(), adds=emails(3))
    assert harness.apply(change, rows).ok
    harness.emulator.wait_idle()
    (harness.tmp / "journal.jsonl").unlink()  # no cs_id known: the next step is a create
    # As a kill between sending the create and recording its answer leaves the journal.
    assert change.delta is not None
    sent = op_id(change.address, change.delta.sha256, "add", 0)
    harness.journal.record(sent, change.address, "sent", request="create")
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    statuses = [r.path.rsplit("/", 1)[1] for r in api_requests(harness.emulator)]
    assert statuses[-2:] == ["file-segment", "add-users"]
    harness.emulator.wait_idle()
    assert harness.emulator.segments() == {"cart_7d": set(emails(3))}


def test_recreate_onto_a_new_segment_removes_from_the_old_one(harness: Harness) -> None:
    harness.apply(*change_of(None, settings(), adds=emails(4)))
    new = settings(**{"segment.name": "cart_14d"})
    change, rows = change_of(settings(), new, removes=emails(4), adds=emails(3))
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert harness.emulator.segments() == {"cart_7d": set(), "cart_14d": set(emails(3))}
    check_requests(harness.emulator)


def test_attribute_change_on_the_same_segment_replaces_its_users(harness: Harness) -> None:
    harness.apply(*change_of(None, settings(), adds=emails(4)))
    new = settings(**{"attribute.name": "ID"})
    ids = [f"id-{i}" for i in range(3)]
    change, rows = change_of(settings(), new, removes=emails(4), adds=ids)
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert result.sent.add == 3 and result.sent.remove == 4
    assert harness.emulator.segments() == {"cart_7d": set(ids)}
    assert api_requests(harness.emulator)[-1].path.endswith("/replace")
    assert harness.emulator.segment("cart_7d").attribute_name == "ID"  # type: ignore[union-attr]
    check_requests(harness.emulator)


def test_destroy_removes_every_member(harness: Harness) -> None:
    harness.apply(*change_of(None, settings(), adds=emails(4)))
    result = harness.apply(*change_of(settings(), None, removes=emails(4)))
    assert result.ok and result.confirmed is None and result.sent.remove == 4
    assert harness.emulator.segments() == {"cart_7d": set()}


def test_removing_from_a_segment_that_does_not_exist_is_done(harness: Harness) -> None:
    result = harness.apply(*change_of(settings(), None, removes=emails(2)))
    assert result.ok and result.confirmed is None, result.message
    assert "does not exist" in result.message


def test_adding_to_a_segment_that_is_gone_creates_it(harness: Harness) -> None:
    result = harness.apply(*change_of(settings(), settings(), adds=emails(2)))
    assert result.ok and result.confirmed is None, result.message
    assert harness.emulator.segments() == {"cart_7d": set(emails(2))}


def test_large_changes_are_split_into_files_under_the_limit(harness: Harness) -> None:
    harness.max_file_bytes = 100  # 4 addresses a file
    change, rows = change_of(None, settings(), adds=emails(10))
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert [len(check_member_file(f, 100)) for f in harness.publisher.files] == [4, 4, 2]
    kinds = [r.path.rsplit("/", 1)[1] for r in api_requests(harness.emulator)]
    assert kinds == ["file-segment", "add-users", "add-users"]
    assert harness.emulator.segments() == {"cart_7d": set(emails(10))}


# quota


def test_quota_leaves_operations_pending_and_the_next_apply_continues(harness: Harness) -> None:
    harness.options["quota.ops_per_hour"] = 2
    harness.max_file_bytes = 100
    change, rows = change_of(None, settings(), adds=emails(18))  # 5 files
    result = harness.apply(change, rows)
    assert result.ok and result.pending == 3, result.message
    assert result.confirmed == ((0, 8),)
    assert "2027-01-15 09:" in result.eta  # one hour after T0 (08:00 UTC)
    assert len(api_requests(harness.emulator)) == 2, "nothing sent past the quota"

    change, rows = leftover(change, rows, result)
    again = harness.apply(change, rows)
    assert len(api_requests(harness.emulator)) == 2 and again.pending == 3

    harness.clock.now += 3600
    result = harness.apply(change, rows)
    assert result.pending == 1 and result.confirmed == ((0, 8),), result.message
    harness.clock.now += 3600
    change, rows = leftover(change, rows, result)
    result = harness.apply(change, rows)
    assert result.ok and result.pending == 0 and result.confirmed is None, result.message
    assert harness.emulator.segments() == {"cart_7d": set(emails(18))}
    check_no_secrets(harness, result)


@pytest.mark.parametrize(
    "retry_after,wait", [(None, 3600), (900, 900), (7200, 7200)], ids=["window", "15min", "2h"]
)
def test_a_429_from_moengage_means_the_quota_is_spent(
    harness: Harness, retry_after: int | None, wait: int
) -> None:
    harness.emulator.ops_per_hour = 1  # MoEngage counts more than this workspace's ledger
    harness.emulator.quota_retry_after = retry_after
    harness.max_file_bytes = 100
    change, rows = change_of(None, settings(), adds=emails(8))
    result = harness.apply(change, rows)
    assert result.ok and result.pending == 1 and result.confirmed == ((0, 4),), result.message
    assert "429" in result.message
    when = eta_text([T0 + wait], T0)
    assert f"MoEngage answered 429 Too Many Requests: not before {when}" in result.message
    assert result.eta == when, "the ETA comes from MoEngage's answer, not from the ledger"
    refused = [r for r in harness.emulator.server.requests if r.path.startswith("/v2/")]
    assert len(refused) == 2, "a quota 429 is not retried"

    # the next plan's ETA for the rest comes from the refusal too
    shutil.copy(harness.tmp / "ledger.json", harness.tmp / ledger_name(harness.connection()))
    estimator = PLATFORM.estimator(harness.connection(), FileRecords(harness.tmp), T0 + 60)
    left, _ = leftover(change, rows, result)
    assert estimator.estimate(left) == (1, when)


def test_a_429_with_a_short_retry_after_is_waited_and_sent(harness: Harness) -> None:
    harness.emulator.server.faults.throttle_every = 1  # the first request only: see below
    harness.emulator.server.faults.retry_after = 2
    calls = {"n": 0}
    pick = harness.emulator.server.faults.pick

    def once() -> tuple[int, dict[str, str]] | None:
        calls["n"] += 1
        return pick() if calls["n"] == 1 else None

    harness.emulator.server.faults.pick = once  # type: ignore[method-assign]
    change, rows = change_of(None, settings(), adds=emails(3))
    result = harness.apply(change, rows)
    assert result.ok and result.pending == 0 and result.confirmed is None, result.message
    assert QuotaLedger(FileRecords(harness.tmp), "ledger.json").refusals == ()
    assert harness.emulator.segments() == {"cart_7d": set(emails(3))}


# callbacks


def test_failed_processing_is_not_confirmed_and_is_sent_again(harness: Harness) -> None:
    harness.emulator.processor.max_file_bytes = 10  # "File size cannot be greater than 150MB"
    change, rows = change_of(None, settings(), adds=emails(3))
    result = harness.apply(change, rows)
    assert not result.ok and result.confirmed == (), result.message
    assert "File size cannot be greater" in result.message
    assert harness.publisher.live == set()
    harness.emulator.processor.max_file_bytes = 150_000_000
    change, rows = leftover(change, rows, result)
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert harness.emulator.segments() == {"cart_7d": set(emails(3))}


def test_results_that_come_late_are_awaited_by_the_next_apply(harness: Harness) -> None:
    harness.options["callback.wait"] = 0.2
    harness.emulator.processor.delay = 0.5
    change, rows = change_of(None, settings(), adds=emails(3))
    result = harness.apply(change, rows)
    assert not result.ok and result.confirmed == () and result.pending == 1, result.message
    assert "awaiting MoEngage's result" in result.message
    entries = harness.journal.operations("cart_7d.moe")
    assert {e["status"] for e in entries if e["op"].endswith(":0")} == {"accepted"}

    harness.options["callback.wait"] = 30
    change, rows = leftover(change, rows, result)  # nothing confirmed: the same delta
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert len(api_requests(harness.emulator)) == 1, "awaited, not sent again"
    assert harness.emulator.segments() == {"cart_7d": set(emails(3))}


def test_results_that_cannot_reach_this_apply_are_sent_again(
    harness: Harness, tmp_path: Path
) -> None:
    harness.options["callback.wait"] = 0.2
    harness.emulator.processor.delay = 0.3
    change, rows = change_of(None, settings(), adds=emails(3))
    result = harness.apply(change, rows)
    assert result.pending == 1
    with CallbackReceiver() as other:  # another URL: the old callbacks cannot arrive here
        harness.receiver = other
        harness.options["callback.wait"] = 30
        result = harness.apply(*leftover(change, rows, result))
    assert result.ok and result.confirmed is None, result.message
    assert len(api_requests(harness.emulator)) == 2
    assert harness.emulator.segments() == {"cart_7d": set(emails(3))}


def test_without_callbacks_a_202_is_confirmed(harness: Harness) -> None:
    harness.receiver = None
    change, rows = change_of(None, settings(), adds=emails(3))
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert all("callback_url" not in r.json() for r in api_requests(harness.emulator))
    assert len(harness.publisher.live) == 1, "kept: MoEngage may not have downloaded it yet"
    assert harness.emulator.segments() == {"cart_7d": set(emails(3))}


def test_a_confirmed_operation_is_not_sent_again_after_a_crash(harness: Harness) -> None:
    change, rows = change_of(None, settings(), adds=emails(3))
    harness.records = False
    harness.apply(change, rows)  # killed before the state was written: the same plan again
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None
    assert len(api_requests(harness.emulator)) == 1


# faults and errors


def test_throttling_and_server_errors_converge(harness: Harness) -> None:
    harness.emulator.server.faults = Faults(throttle_every=2, retry_after=1, error_rate=0.3)
    harness.max_file_bytes = 100
    change, rows = change_of(None, settings(), adds=emails(12))
    result = harness.apply(change, rows)
    assert result.ok and result.confirmed is None, result.message
    assert harness.emulator.segments() == {"cart_7d": set(emails(12))}
    statuses = {r.path for r in harness.emulator.server.requests}
    assert len(harness.emulator.server.requests) > 3 and statuses
    check_requests(harness.emulator)


def test_a_refusal_fails_the_change_with_the_api_message_and_no_secret(harness: Harness) -> None:
    harness.api_key = "wrong-key"
    change, rows = change_of(None, settings(), adds=emails(3))
    result = harness.apply(change, rows)
    assert not result.ok and result.confirmed == ()
    assert "HTTP 401: Authentication required" in result.message
    assert "wrong-key" not in result.message
    assert harness.publisher.live == set()
    check_no_secrets(harness, result)


def test_the_database_header_is_sent_when_configured(harness: Harness) -> None:
    harness.options["database"] = "eu_db"
    result = harness.apply(*change_of(None, settings(), adds=emails(1)))
    assert result.ok, result.message
    assert api_requests(harness.emulator)[0].headers["database"] == "eu_db"
    assert harness.emulator.callbacks[0]["db_name"] == "eu_db"


# strategy (pure)


def test_strategy_per_kind_of_change() -> None:
    create, _ = change_of(None, settings(), adds=["a"])
    assert strategy_for(create, "moe").create
    by_id, _ = change_of(None, settings(**{"segment.cs_id": "6a1d"}), adds=["a"])
    assert not strategy_for(by_id, "moe").create, "a cs_id names a segment that exists"
    renamed, _ = change_of(settings(), settings(**{"segment.name": "x"}), ["a"], ["a"])
    strategy = strategy_for(renamed, "moe")
    assert strategy.create and strategy.remove_from and strategy.remove_from.name == "cart_7d"
    attribute, _ = change_of(settings(), settings(**{"attribute.type": "double"}), ["a"], ["1"])
    assert strategy_for(attribute, "moe").replace
    only_removes, _ = change_of(settings(), settings(**{"attribute.name": "ID"}), ["a"])
    assert not strategy_for(only_removes, "moe").replace, "an empty replace file is not allowed"
    moved, _ = change_of(settings(connection="moe-old"), settings(), ["a"], ["a"])
    with pytest.raises(DestinationError, match="moe-old"):
        strategy_for(moved, "moe")
