"""The mediarithmics emulator follows the reference: auth, envelopes, imports, executions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulators._server import Faults
from emulators.mediarithmics import MediarithmicsEmulator
from tests.emulators.fixtures_mediarithmics import TOKEN, wait_until

H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def emulator() -> Iterator[MediarithmicsEmulator]:
    with MediarithmicsEmulator(TOKEN, datamarts={"1509", "1510"}, process_delay=0.01) as emu:
        yield emu


@pytest.fixture
def api(emulator: MediarithmicsEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, headers={"Authorization": TOKEN}) as client:
        yield client


def create_import(api: httpx.Client, mime: str = "APPLICATION_X_NDJSON", dm: str = "1509") -> str:
    body = {"document_type": "USER_SEGMENT", "mime_type": mime, "encoding": "utf-8", "name": "t"}
    response = api.post(f"/v1/datamarts/{dm}/document_imports", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["id"])


def upload(api: httpx.Client, imp: str, text: str, ctype: str = "application/x-ndjson") -> str:
    response = api.post(
        f"/v1/datamarts/1509/document_imports/{imp}/executions",
        content=text.encode(),
        headers={"Content-Type": ctype},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "PENDING"
    return str(data["id"])


def finished(api: httpx.Client, imp: str, ex: str) -> dict[str, Any]:
    url = f"/v1/datamarts/1509/document_imports/{imp}/executions/{ex}"
    seen: list[dict[str, Any]] = []

    def terminal() -> bool:
        seen.append(api.get(url).json()["data"])
        return seen[-1]["status"] in ("SUCCEEDED", "FAILED", "CANCELED")

    wait_until(terminal)
    return seen[-1]


def line(**fields: Any) -> str:
    command = {"operation": "UPDATE", "expiration_duration": 0, **fields}
    return json.dumps(command) + "\n"


def test_auth_is_the_raw_token_and_errors_are_json(api: httpx.Client) -> None:
    path = "/v1/datamarts/1509/document_imports"
    for headers in ({"Authorization": ""}, {"Authorization": f"Bearer {TOKEN}"}):
        response = api.get(path, headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert body["status"] == "error" and body["error"] and TOKEN not in response.text
    assert api.get(path).json() == {
        "status": "ok",
        "data": [],
        "count": 0,
        "total": 0,
        "first_result": 0,
        "max_results": 50,
    }


def test_document_imports_are_validated_created_listed_and_read(api: httpx.Client) -> None:
    base = "/v1/datamarts/1509/document_imports"
    good = {
        "document_type": "USER_SEGMENT",
        "mime_type": "TEXT_CSV",
        "encoding": "utf-8",
        "name": "n",
    }
    bad = [
        {**good, "document_type": "USER_THING"},
        {**good, "document_type": "USER_ACTIVITY"},  # CSV is for USER_SEGMENT only
        {**good, "mime_type": "APPLICATION_JSON"},
        {k: v for k, v in good.items() if k != "name"},
        {k: v for k, v in good.items() if k != "encoding"},
    ]
    for body in bad:
        response = api.post(base, json=body)
        assert response.status_code == 400 and response.json()["status"] == "error", body
    assert api.post(base, content=json.dumps(good)).status_code == 400  # no JSON content type
    assert api.post("/v1/datamarts/999/document_imports", json=good).status_code == 404

    ids = [str(api.post(base, json=good).json()["data"]["id"]) for _ in range(3)]
    created = api.get(f"{base}/{ids[0]}").json()["data"]
    assert isinstance(created["id"], str) and created["datamart_id"] == "1509"
    assert created["mime_type"] == "TEXT_CSV" and created["datafarm_key"]
    page = api.get(base, params={"first_result": 1, "max_results": 1}).json()
    assert (page["count"], page["total"], page["first_result"]) == (1, 3, 1)
    assert page["data"][0]["id"] == ids[1]
    assert api.get(f"{base}/424242").status_code == 404
    assert api.get(f"/v1/datamarts/1510/document_imports/{ids[0]}").status_code == 404


def test_execution_runs_asynchronously_and_changes_membership(
    emulator: MediarithmicsEmulator, api: httpx.Client
) -> None:
    emulator.process_delay = 0.5  # RUNNING for half a second: a busy machine still sees it
    imp = create_import(api)
    text = (
        line(email_hash=H1, segment_technical_name="cart", data_bag='{"n":1}')
        + line(user_account_id="crm-1", compartment_id="12", segment_ids=["7", "8"])
        + line(user_agent_id="vec:1", segment_id="7")
    )
    ex = upload(api, imp, text)
    url = f"/v1/datamarts/1509/document_imports/{imp}/executions/{ex}"
    wait_until(lambda: api.get(url).json()["data"]["status"] == "RUNNING")
    execution = finished(api, imp, ex)
    assert execution["status"] == "SUCCEEDED"
    assert execution["parameters"]["document_import_id"] == imp
    result = execution["result"]
    assert (result["total_success"], result["total_failure"]) == (3, 0)
    assert result["error_file_uri"] is None and result["input_file_name"]
    assert emulator.members("1509") == {
        ("segment_technical_name", "cart"): {("email_hash", H1)},
        ("segment_id", "7"): {("user_account_id", "crm-1", "12"), ("user_agent_id", "vec:1")},
        ("segment_id", "8"): {("user_account_id", "crm-1", "12")},
    }
    attrs = emulator.member_attributes("1509")[("segment_technical_name", "cart")]
    assert attrs[("email_hash", H1)]["data_bag"] == '{"n":1}'

    delete = json.dumps(
        {
            "operation": "DELETE",
            "expiration_duration": 0,
            "email_hash": H1,
            "segment_technical_name": "cart",
        }
    )
    assert finished(api, imp, upload(api, imp, delete))["status"] == "SUCCEEDED"
    assert ("segment_technical_name", "cart") not in emulator.members("1509")


def test_bad_lines_are_counted_and_listed_in_an_error_file(
    emulator: MediarithmicsEmulator, api: httpx.Client
) -> None:
    imp = create_import(api)
    ok = {"email_hash": H1, "segment_id": "7"}
    lines = [
        line(**ok),  # 1: good
        json.dumps({"operation": "UPDATE", **ok}) + "\n",  # 2: no expiration_duration
        json.dumps({"operation": "DELETE", "expiration_duration": "0", **ok}) + "\n",  # 3: text
        line(email_hash=H2, user_agent_id="v", segment_id="7"),  # 4: two identifiers
        line(email_hash=H2, segment_id="7", segment_technical_name="x"),  # 5: two references
        line(email_hash=H2),  # 6: no segment
        line(email_hash=H2, segment_id="7", data_bag={"a": 1}),  # 7: data_bag not a string
        line(email_hash=H2, segment_id="7", data_bag="{not json"),  # 8
        json.dumps([{"operation": "UPDATE"}]) + "\n",  # 9: an enclosing array
        line(operation="UPSERT", email_hash=H2, segment_id="7"),  # 10
        line(email_hash=H3, compartment_id="1", segment_id="7"),  # 11: compartment w/o account
        "{not json\n",  # 12
        line(user_account_id="u-1", compartment_id="9", segment_id="7"),  # 13: good
    ]
    result = finished(api, imp, upload(api, imp, "".join(lines)))["result"]
    assert (result["total_success"], result["total_failure"]) == (2, 11)
    errors = [json.loads(x) for x in httpx.get(result["error_file_uri"]).text.splitlines()]
    assert [e["line"] for e in errors] == list(range(2, 13))
    assert all(e["error"] for e in errors)
    assert not any(H1 in e["error"] or H2 in e["error"] for e in errors)
    assert emulator.members("1509") == {
        ("segment_id", "7"): {("email_hash", H1), ("user_account_id", "u-1", "9")}
    }


def test_csv_imports_take_a_header_row_and_text_csv_only(
    emulator: MediarithmicsEmulator, api: httpx.Client
) -> None:
    imp = create_import(api, "TEXT_CSV")
    text = (
        "operation,expiration_duration,user_account_id,segment_technical_name,data_bag\n"
        'UPDATE,60,acc-1,vip,"{""tier"":""gold""}"\n'
        "UPDATE,60,acc-2,vip,\n"
        "DELETE,,acc-3,vip,\n"  # no expiration_duration
    )
    assert (
        api.post(
            f"/v1/datamarts/1509/document_imports/{imp}/executions",
            content=text.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        ).status_code
        == 400
    )
    result = finished(api, imp, upload(api, imp, text, "text/csv; charset=utf-8"))["result"]
    assert (result["total_success"], result["total_failure"]) == (2, 1)
    members = emulator.member_attributes("1509")[("segment_technical_name", "vip")]
    assert set(members) == {("user_account_id", "acc-1", "1"), ("user_account_id", "acc-2", "1")}
    assert members[("user_account_id", "acc-1", "1")]["data_bag"] == '{"tier":"gold"}'


def test_ndjson_import_refuses_another_content_type_and_empty_files(api: httpx.Client) -> None:
    imp = create_import(api)
    url = f"/v1/datamarts/1509/document_imports/{imp}/executions"
    for ctype, body in (
        ("text/csv", b"x"),
        ("application/json", b"{}"),
        ("application/x-ndjson", b""),
    ):
        response = api.post(url, content=body, headers={"Content-Type": ctype})
        assert response.status_code == 400 and response.json()["status"] == "error"
    assert (
        api.post(
            "/v1/datamarts/1509/document_imports/999/executions",
            content=b"x",
            headers={"Content-Type": "application/x-ndjson"},
        ).status_code
        == 404
    )


def test_executions_list_newest_first_and_single_get_can_be_switched_off(
    emulator: MediarithmicsEmulator, api: httpx.Client
) -> None:
    imp = create_import(api)
    ids = [upload(api, imp, line(email_hash=H1, segment_id=str(i))) for i in range(3)]
    base = f"/v1/datamarts/1509/document_imports/{imp}/executions"
    page = api.get(base, params={"max_results": 2}).json()
    assert [e["id"] for e in page["data"]] == [ids[2], ids[1]]
    assert (page["count"], page["total"], page["max_results"]) == (2, 3, 2)
    assert api.get(base, params={"max_results": "x"}).status_code == 400
    emulator.single_get = False
    assert api.get(f"{base}/{ids[0]}").status_code == 404
    assert api.get(base, params={"first_result": 2}).json()["data"][0]["id"] == ids[0]


def test_cancel_and_injected_failure_change_nothing(
    emulator: MediarithmicsEmulator, api: httpx.Client
) -> None:
    imp = create_import(api)
    emulator.process_delay = 0.3
    ex = upload(api, imp, line(email_hash=H1, segment_id="7"))
    url = f"/v1/datamarts/1509/document_imports/{imp}/executions/{ex}"
    canceled = api.post(f"{url}/action", json={"action": "CANCEL"})
    assert canceled.json()["data"]["status"] == "CANCELED"
    assert api.post(f"{url}/action", json={"action": "CANCEL"}).status_code == 400
    assert api.post(f"{url}/action", json={"action": "PAUSE"}).status_code == 400

    emulator.process_delay = 0.01
    emulator.fail_next_executions = 1
    failed = finished(api, imp, upload(api, imp, line(email_hash=H2, segment_id="7")))
    assert failed["status"] == "FAILED" and failed["error"]["message"]
    assert finished(api, imp, upload(api, imp, line(email_hash=H3, segment_id="7")))["status"] == (
        "SUCCEEDED"
    )
    wait_until(lambda: api.get(url).json()["data"]["status"] == "CANCELED")
    assert emulator.members("1509") == {("segment_id", "7"): {("email_hash", H3)}}


def test_reject_hook_fails_chosen_lines(emulator: MediarithmicsEmulator, api: httpx.Client) -> None:
    emulator.reject = lambda c: "unknown segment" if c.get("segment_id") == "404" else None
    imp = create_import(api)
    text = line(email_hash=H1, segment_id="404") + line(email_hash=H2, segment_id="7")
    result = finished(api, imp, upload(api, imp, text))["result"]
    assert (result["total_success"], result["total_failure"]) == (1, 1)
    assert httpx.get(result["error_file_uri"]).json() == {"line": 1, "error": "unknown segment"}


def test_faults_answer_429_with_retry_after_and_503() -> None:
    faults = Faults(throttle_every=2, retry_after=3)
    with MediarithmicsEmulator(TOKEN, faults=faults) as emu:
        url = f"{emu.base_url}/v1/datamarts/1509/document_imports"
        statuses = [httpx.get(url, headers={"Authorization": TOKEN}) for _ in range(2)]
        assert [r.status_code for r in statuses] == [200, 429]
        assert statuses[1].headers["Retry-After"] == "3"
    with MediarithmicsEmulator(TOKEN, faults=Faults(error_rate=1.0)) as emu:
        url = f"{emu.base_url}/v1/datamarts/1509/document_imports"
        assert httpx.get(url, headers={"Authorization": TOKEN}).status_code == 503


def test_unknown_paths_and_methods(api: httpx.Client) -> None:
    assert api.get("/v1/nothing").status_code == 404
    assert api.delete("/v1/datamarts/1509/document_imports").status_code == 405


def test_runs_standalone_and_never_prints_the_token() -> None:
    env = {**os.environ, "MICS_EMULATOR_TOKEN": TOKEN}
    command = [sys.executable, "-m", "emulators.mediarithmics", "--port", "0"]
    command += ["--token-env", "MICS_EMULATOR_TOKEN"]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            url = first.split()[-1]
            assert url.startswith("http://127.0.0.1:") and TOKEN not in first
            response = httpx.get(
                f"{url}/v1/datamarts/1509/document_imports", headers={"Authorization": TOKEN}
            )
            assert response.json()["status"] == "ok"
        finally:
            process.terminate()
            process.wait(timeout=10)
    missing = subprocess.run(
        [sys.executable, "-m", "emulators.mediarithmics", "--token-env", "SEGOPS_UNSET_VARIABLE"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "SEGOPS_UNSET_VARIABLE" in missing.stderr
