"""Answers are parsed strictly: a malformed one is an error naming the call, never a confirmation.

mediarithmics and MoEngage emulators on 127.0.0.1 answer with wrong types, missing fields,
foreign ids and lists that page forever; segops' callback receiver gets malformed CallbackV2.
"""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators._server import Faults
from emulators.mediarithmics import MediarithmicsEmulator
from emulators.moengage import MoEngageEmulator
from segops.apply.journal import FileJournal, JournalResources
from segops.destinations import ApplyContext, MemberRow, Sent
from segops.destinations.http import RetryPolicy
from segops.destinations.mediarithmics import api as api_module
from segops.destinations.moengage.callbacks import CallbackReceiver
from segops.destinations.moengage.destination import MoEngageDestination, make_moengage_client
from segops.destinations.moengage.publish import HttpPublisher
from segops.destinations.moengage.quota import QuotaLedger
from segops.model import (
    Action,
    Connection,
    DeltaFile,
    DestinationChange,
    KeyEncoding,
    MemberCounts,
    Platform,
)
from segops.state.records import FileRecords
from tests.emulators.fixtures_mediarithmics import (
    ADDRESS,
    TOKEN,
    change,
    close_clients,
    destination,
    indexed,
    settings,
)

SLACK = 3.0
Mangle = Callable[[Any], Any]


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    close_clients()


def on_data(edit: Callable[[dict[str, Any]], None], finished_only: bool = False) -> Mangle:
    """Return a mangle that edits the `data` object of an answer (once it finished, maybe)."""

    def mangle(document: Any) -> Any:
        document = copy.deepcopy(document)
        data = document.get("data") if isinstance(document, dict) else None
        if isinstance(data, dict) and (not finished_only or data.get("status") == "SUCCEEDED"):
            edit(data)
        return document

    return mangle


def set_result(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["result"].__setitem__(key, value)


def drop_result(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["result"].pop(key)


def set_field(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


READS = r"^GET .*/executions/\d+$"
UPLOADS = r"^POST .*/executions$"
MICS_CASES: dict[str, tuple[str, Mangle, str]] = {
    "total_failure as a string": (READS, on_data(set_result("total_failure", "7"), True), "read"),
    "total_failure missing": (READS, on_data(drop_result("total_failure"), True), "read"),
    "total_failure a boolean": (READS, on_data(set_result("total_failure", False), True), "read"),
    "total_success negative": (READS, on_data(set_result("total_success", -1), True), "read"),
    "total_failure a float": (READS, on_data(set_result("total_failure", 0.0), True), "read"),
    "result a list": (READS, on_data(set_field("result", []), True), "read"),
    "no result at all": (READS, on_data(set_field("result", None), True), "read"),
    "status a number": (READS, on_data(set_field("status", 3)), "read"),
    "status lower case": (READS, on_data(set_field("status", "succeeded")), "read"),
    "another execution's id": (READS, on_data(set_field("id", "999999")), "read"),
    "id a number": (READS, on_data(set_field("id", 1002)), "read"),
    "error_file_uri a number": (READS, on_data(set_result("error_file_uri", 5), True), "read"),
    "envelope status error": (READS, lambda d: {**d, "status": "error"}, "read"),
    "data null": (READS, lambda d: {**d, "data": None}, "read"),
    "NaN count": (READS, on_data(set_result("total_failure", float("nan")), True), "read"),
    "uploaded id a number": (UPLOADS, on_data(set_field("id", 1002)), "upload"),
    "uploaded id with letters": (UPLOADS, on_data(set_field("id", "10a2")), "upload"),
    "uploaded id empty": (UPLOADS, on_data(set_field("id", "")), "upload"),
    "upload answer a list": (UPLOADS, lambda d: [d], "upload"),
}


@pytest.mark.parametrize("match,mangle,call", MICS_CASES.values(), ids=MICS_CASES.keys())
def test_a_malformed_mediarithmics_answer_confirms_nothing(
    match: str, mangle: Mangle, call: str, tmp_path: Path
) -> None:
    faults = Faults(mangle=mangle, match=match)
    with MediarithmicsEmulator(TOKEN, faults=faults, process_delay=0.002) as emulator:
        dest, journal, _ = destination(emulator, tmp_path, poll_interval=0.005, poll_timeout=10)
        result = dest.apply(change(None, settings()), indexed([MemberRow("add", "a")]))
    assert not result.ok and result.confirmed == (), result.message
    assert all(e["status"] != "confirmed" for e in journal.operations(ADDRESS))
    named = "read execution" if call == "read" else "upload to document import"
    assert named in result.message, result.message
    assert TOKEN not in result.message


@pytest.mark.parametrize(
    "latency,poll_timeout,stops", [(0.0, 30.0, "pages"), (0.02, 0.5, "time")], ids=["cap", "time"]
)
def test_an_endless_execution_list_stops_at_the_page_cap_or_poll_timeout(
    latency: float,
    poll_timeout: float,
    stops: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_module, "MAX_PAGES", 20)
    faults = Faults(latency=latency, match=r"^GET .*/executions$")
    with MediarithmicsEmulator(TOKEN, faults=faults, single_get=False) as emulator:
        emulator.endless_pages = True
        dest, journal, _ = destination(
            emulator, tmp_path, poll_timeout=poll_timeout, poll_interval=0.01
        )
        start = time.monotonic()
        result = dest.apply(change(None, settings()), indexed([MemberRow("add", "a")]))
        took = time.monotonic() - start
        lists = [r for r in emulator.server.requests if r.path.endswith("/executions")]
    assert not result.ok and result.confirmed == () and "1 unconfirmed" in result.message
    assert [e["status"] for e in journal.operations(ADDRESS)] == ["accepted"]
    listed = [r for r in lists if r.method == "GET"]
    assert 1 <= len(listed) <= 20
    if stops == "pages":
        assert len(listed) == 20 and "not in the first 20 pages" in result.message
    else:
        assert took <= poll_timeout + SLACK and len(listed) < 20


# MoEngage


WS, KEY = "ws-answers", "key-answers-1"


def moe_change(users: list[str]) -> DestinationChange:
    values = {
        "connection": "moe",
        "segment.name": "cart",
        "attribute.name": "email",
        "attribute.type": "string",
        "expiry_days": 30,
    }
    return DestinationChange(
        address="cart.moe",
        segment="cart",
        connection="moe",
        platform=Platform.MOENGAGE,
        actions=(Action.CREATE,),
        settings_before=None,
        settings_after=tuple(sorted(values.items())),
        setting_changes=(),
        members=MemberCounts(add=len(users)),
        delta=DeltaFile("a" * 64, len(users)),
        encoding=KeyEncoding.TEXT,
    )


MOE_CASES: dict[str, Mangle] = {
    "cs_id a number": lambda d: {**d, "cs_id": 42},
    "cs_id empty": lambda d: {**d, "cs_id": ""},
    "cs_id with a line break": lambda d: {**d, "cs_id": "ab\ncd"},
    "success a string": lambda d: {**d, "success": "yes"},
    "success false": lambda d: {**d, "success": False},
    "message a list": lambda d: {**d, "message": ["accepted"]},
    "an array": lambda d: [d],
    "a string": lambda d: "accepted",
}


@pytest.mark.parametrize("mangle", MOE_CASES.values(), ids=MOE_CASES.keys())
def test_a_malformed_moengage_acceptance_is_not_an_acceptance(
    mangle: Mangle, tmp_path: Path
) -> None:
    faults = Faults(mangle=mangle, match="^(POST|PUT) /v2/")
    with MoEngageEmulator(WS, KEY, faults=faults) as emulator, HttpPublisher() as publisher:
        connection = Connection(
            "moe", Platform.MOENGAGE, Platform.MOENGAGE, (("base_url", emulator.base_url),)
        )
        journal = FileJournal(tmp_path / "journal.jsonl")
        context = ApplyContext(journal, JournalResources(journal), "run")
        policy = RetryPolicy(max_attempts=2, base_delay=0.01, deadline=20, timeout=10)
        ledger = QuotaLedger(FileRecords(tmp_path), "ledger.json")
        with make_moengage_client(connection, WS, KEY, policy) as client:
            dest = MoEngageDestination(connection, client, context, policy, publisher, ledger, None)
            users = ["a@example.com", "b@example.com"]
            rows = [MemberRow("add", u, index=i) for i, u in enumerate(users)]
            result = dest.apply(moe_change(users), lambda: iter(rows))
    assert not result.ok and result.confirmed == (), result.message
    assert result.sent == Sent()
    assert "cart.moe: create" in result.message
    statuses = {e["status"] for e in journal.operations("cart.moe")}
    assert statuses.isdisjoint({"accepted", "confirmed"})
    assert journal.get_resource("moengage/moe/cart") is None
    assert ledger.entries == ()


VALID_CALLBACK = {
    "db_name": "db",
    "segment_name": "cart",
    "request_id": "r1",
    "status": 201,
    "values_found": 2,
    "values_processed": 2,
    "user_count": 1,
}
BAD_CALLBACKS: dict[str, Any] = {
    "db_name missing": {k: v for k, v in VALID_CALLBACK.items() if k != "db_name"},
    "request_id a number": {**VALID_CALLBACK, "request_id": 7},
    "status a string": {**VALID_CALLBACK, "status": "201"},
    "status a boolean": {**VALID_CALLBACK, "status": True},
    "user_count a string": {**VALID_CALLBACK, "user_count": "7"},
    "values_found negative": {**VALID_CALLBACK, "values_found": -1},
    "values_processed a float": {**VALID_CALLBACK, "values_processed": 2.0},
    "error_message a number": {**VALID_CALLBACK, "status": 400, "error_message": 5},
    "an array": [VALID_CALLBACK],
}


@pytest.mark.parametrize("payload", BAD_CALLBACKS.values(), ids=BAD_CALLBACKS.keys())
def test_a_malformed_callback_is_refused_and_never_recorded(payload: Any) -> None:
    with CallbackReceiver() as receiver:
        answer = httpx.post(receiver.url_for("op-1"), json=payload, timeout=5)
        assert answer.status_code == 400
        assert receiver.result("op-1") is None
        good = httpx.post(receiver.url_for("op-2"), json=VALID_CALLBACK, timeout=5)
        assert good.status_code == 200 and receiver.result("op-2") == VALID_CALLBACK


@pytest.mark.parametrize(
    "headers,body,status",
    [
        ("", b"", 411),  # no Content-Length
        ("Content-Length: -1\r\n", b"", 411),
        ("Content-Length: 1e3\r\n", b"", 411),
        ("Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n", 411),
        (f"Content-Length: {2 << 20}\r\n", b"", 413),
    ],
    ids=["no-length", "negative-length", "not-a-number", "chunked", "too-large"],
)
def test_a_callback_without_a_sane_length_is_refused(
    headers: str, body: bytes, status: int
) -> None:
    with CallbackReceiver() as receiver:
        url = httpx.URL(receiver.url_for("op"))
        with socket.create_connection((url.host, url.port or 80), timeout=5) as conn:
            head = f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
            conn.sendall(head.encode() + body)
            answer = conn.recv(4096).decode()
        assert answer.startswith(f"HTTP/1.1 {status} ")
        assert receiver.result("op") is None
