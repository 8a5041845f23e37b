"""The MoEngage emulator follows the reference: auth, validation, answers, quotas, callbacks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from emulators._server import Faults
from emulators.moengage import MoEngageEmulator
from segops.destinations.moengage.callbacks import CallbackReceiver
from segops.destinations.moengage.publish import HttpPublisher

WS, KEY = "ws-emu", "key-emu"
CREATE = "/v2/custom-segments/file-segment"
ADD = "/v2/custom-segments/file-segment/add-users"
REMOVE = "/v2/custom-segments/file-segment/remove-users"
REPLACE = "/v2/custom-segments/file-segment/replace"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextmanager
def running(clock: Clock, **options: Any) -> Iterator[tuple[MoEngageEmulator, httpx.Client]]:
    with (
        MoEngageEmulator(WS, KEY, clock=clock, **options) as emulator,
        httpx.Client(base_url=emulator.base_url, auth=(WS, KEY)) as api,
    ):
        yield emulator, api


@pytest.fixture
def emulator(clock: Clock) -> Iterator[MoEngageEmulator]:
    with MoEngageEmulator(WS, KEY, clock=clock, process_delay=0.0) as emulator:
        yield emulator


@pytest.fixture
def api(emulator: MoEngageEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, auth=(WS, KEY)) as client:
        yield client


@pytest.fixture
def files() -> Iterator[HttpPublisher]:
    with HttpPublisher() as publisher:
        yield publisher


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as receiver:
        yield receiver


def body(name: str = "seg", url: str = "http://127.0.0.1:1/f.csv", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "attribute_name": "email",
        "attribute_type": "string",
        "file_url": url,
        **extra,
    }


def create(
    api: httpx.Client, name: str = "seg", url: str = "http://127.0.0.1:1/f.csv", **extra: Any
) -> httpx.Response:
    return api.post(CREATE, json=body(name, url, expiry_time=30, **extra))


# requests


def test_wrong_credentials_are_401_with_the_reference_body(emulator: MoEngageEmulator) -> None:
    for auth in [(WS, "nope"), ("other", KEY), None]:
        response = httpx.post(emulator.base_url + CREATE, json=body(expiry_time=1), auth=auth)
        assert response.status_code == 401
        assert response.json()["title"] == "Authentication required"
        assert set(response.json()) == {"title", "description"}


@pytest.mark.parametrize(
    "payload",
    [
        body(),  # create needs expiry_time
        body(expiry_time="30"),
        {k: v for k, v in body(expiry_time=30).items() if k != "file_url"},
        body(expiry_time=30, attribute_type="int"),
        body(url="not a url", expiry_time=30),
        body(expiry_time=30, callback_url="ftp://example.com/cb"),
        body(expiry_time=30, emails=["not-an-email"]),
        ["a list"],
    ],
)
def test_bodies_are_validated_against_the_openapi_schema(api: httpx.Client, payload: Any) -> None:
    response = api.post(CREATE, json=payload)
    assert response.status_code == 400, response.text
    assert response.json()["title"] == "Invalid Request"
    assert "not a url" not in response.text and "not-an-email" not in response.text


def test_the_body_must_be_json(api: httpx.Client) -> None:
    response = api.post(CREATE, content=b"a@example.com\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 400 and response.json()["title"] == "Invalid Request"


def test_create_then_409_and_update_404(api: httpx.Client, emulator: MoEngageEmulator) -> None:
    response = create(api)
    assert response.status_code == 202
    answer = response.json()
    assert answer == {
        "message": "File-segment creation request accepted",
        "success": True,
        "cs_name": "seg",
        "cs_id": answer["cs_id"],
    }
    assert len(answer["cs_id"]) == 24
    conflict = create(api)
    assert conflict.status_code == 409
    assert conflict.json() == {
        "title": "Resource not created",
        "description": "Name already exists : seg",
    }
    missing = api.put(ADD, json=body("other"))
    assert missing.status_code == 404
    assert missing.json() == {
        "title": "Entity Not Found",
        "description": "Segment not found with the given name: other",
    }
    assert api.put(ADD, json=body("seg", cs_id="0" * 24)).status_code == 404  # cs_id wins
    by_id = api.put(REMOVE, json=body("renamed", cs_id=answer["cs_id"]))
    assert by_id.status_code == 202
    assert by_id.json()["message"] == "File-segment user-remove request accepted"
    assert api.put(ADD, json=body()).json()["message"] == "File-segment user-add request accepted"
    assert api.put(REPLACE, json=body()).json()["message"] == (
        "File-segment user-replace request accepted"
    )
    assert api.get(CREATE).status_code == 404


def test_operation_quotas_over_rolling_windows(clock: Clock) -> None:
    with running(clock, limits=(2, 3, 100)) as (emulator, api):
        assert create(api, "a").status_code == 202
        assert create(api, "a").status_code == 409, "refusals do not count"
        assert create(api, "b").status_code == 202
        throttled = create(api, "c")
        assert throttled.status_code == 429 and throttled.json()["title"] == "Too Many Requests"
        clock.now += 3600
        assert create(api, "c").status_code == 202
        assert create(api, "d").status_code == 429  # 3 in the last 24 hours
        clock.now += 86400
        assert create(api, "d").status_code == 202


def test_injected_faults_come_before_the_api(clock: Clock) -> None:
    faults = Faults(throttle_every=1, retry_after=7)
    with MoEngageEmulator(WS, KEY, faults=faults, clock=clock) as emulator:
        response = httpx.post(emulator.base_url + CREATE, json=body(expiry_time=1), auth=(WS, KEY))
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        assert emulator.segments() == {}


# processing and callbacks


def test_files_are_downloaded_applied_and_reported(
    api: httpx.Client,
    emulator: MoEngageEmulator,
    files: HttpPublisher,
    receiver: CallbackReceiver,
) -> None:
    url = files.publish("f.csv", b"a@x.io\nb@x.io\nbad,value\n\nc@x.io\n").url
    assert create(api, "seg", url, callback_url=receiver.url_for("op1")).status_code == 202
    result = receiver.wait_for(["op1"], timeout=5)["op1"]
    assert result["status"] == 201
    assert (result["values_found"], result["values_processed"], result["user_count"]) == (5, 3, 3)
    assert result["segment_name"] == "seg" and result["db_name"] and result["request_id"]
    assert emulator.segments() == {"seg": {"a@x.io", "b@x.io", "c@x.io"}}

    remove = files.publish("r.csv", b"a@x.io\nzzz@x.io\n").url
    api.put(REMOVE, json=body("seg", remove, callback_url=receiver.url_for("op2")))
    assert receiver.wait_for(["op2"], timeout=5)["op2"]["status"] == 201
    assert emulator.segments() == {"seg": {"b@x.io", "c@x.io"}}

    replace = files.publish("p.csv", b"d@x.io\n").url
    api.put(REPLACE, json=body("seg", replace, attribute_name="ID"))
    assert emulator.wait_idle()
    assert emulator.segments() == {"seg": {"d@x.io"}}
    assert emulator.segment("seg").attribute_name == "ID"  # type: ignore[union-attr]
    assert api.put(ADD, json=body("seg", replace)).status_code == 400, "another attribute"


def test_only_known_users_are_added(
    clock: Clock, files: HttpPublisher, receiver: CallbackReceiver
) -> None:
    with running(clock, known_users={"a@x.io"}) as (emulator, api):
        url = files.publish("f.csv", b"a@x.io\nb@x.io\n").url
        create(api, "seg", url, callback_url=receiver.url_for("op"))
        result = receiver.wait_for(["op"], timeout=5)["op"]
        assert (result["values_processed"], result["user_count"]) == (2, 1)
        assert emulator.segments() == {"seg": {"a@x.io"}}


def test_failures_are_reported_with_status_400(
    clock: Clock, files: HttpPublisher, receiver: CallbackReceiver
) -> None:
    with running(clock, max_file_bytes=8, limits=(10, 10, 3)) as (emulator, api):
        big = files.publish("big.csv", b"abcdefgh\nx\n").url
        create(api, "a", big, callback_url=receiver.url_for("big"))
        gone = files.publish("gone.csv", b"x\n")
        files.delete(gone.key)
        create(api, "b", gone.url, callback_url=receiver.url_for("gone"))
        outside = "https://example.com/f.csv"
        create(api, "c", outside, callback_url=receiver.url_for("outside"))
        many = files.publish("many.csv", b"1\n2\n3\n4\n").url
        create(api, "d", many, callback_url=receiver.url_for("many"))
        results = receiver.wait_for(["big", "gone", "outside", "many"], timeout=10)
        assert {k: v["status"] for k, v in results.items()} == dict.fromkeys(results, 400)
        assert results["big"]["error_message"].startswith("File size cannot be greater than 150MB")
        assert results["gone"]["error_message"].startswith("File download failed")
        assert results["outside"]["error_message"].startswith("File download failed")
        assert "user limit" in results["many"]["error_message"]
        assert emulator.segments() == {"a": set(), "b": set(), "c": set(), "d": set()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_standalone() -> None:
    port = _free_port()
    env = {**os.environ, "MOE_API_KEY": "k"}
    command = [sys.executable, "-m", "emulators.moengage", "--port", str(port)]
    with subprocess.Popen(
        [*command, "--workspace-id", "w"], env=env, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert f"127.0.0.1:{port}" in child.stdout.readline()
            url = f"http://127.0.0.1:{port}{CREATE}"
            response = httpx.post(url, json=body(expiry_time=1), auth=("w", "k"))
            assert response.status_code == 202
            assert httpx.post(url, json=body(expiry_time=1)).status_code == 401
        finally:
            child.terminate()
