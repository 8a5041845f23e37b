"""Small diffs run side by side in lanes (DuckDBEngine.diffs), with the results of one at a time.

A workspace of many small segments diffs each local file on a lane of its own (one DuckDB
thread on its own connection); a file two segments read, an inline source and a large file
wait for the lanes and run alone. Whatever ran where, the plan, its deltas, the first error
and the applied snapshots are those of `threads: 1`, which never opens a lane.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import pytest

from segops.apply import loop
from segops.engine import base
from segops.engine.duck import DuckDBEngine
from segops.errors import StateError
from segops.state.local import LocalStateStore
from tests.conftest import SEGOPS_YAML, mics_manifest, plan_json, run, write_tree


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def csv_of(hashes: list[str], ending: str = "\n") -> str:
    return "email_hash" + ending + "".join(x + ending for x in hashes)


def make(root: Path, threads: int, *, bad: tuple[str, ...] = ()) -> None:
    """A workspace of 14 segments; `bad` names the ones whose source holds a bad row."""
    files: dict[str, str] = {
        "segops.yaml": SEGOPS_YAML.replace("threads: 1", f"threads: {threads}"),
    }
    for i in range(8):
        hashes = [h(f"s{i}-{j}@example.com") for j in range(5 + i)]
        if f"s{i}" in bad:
            hashes.insert(2, "not-a-hash")
        files[f"data/s{i}.csv"] = csv_of(hashes)
        files[f"segments/s{i}.yaml"] = mics_manifest(f"s{i}", f"csv: {{path: ../data/s{i}.csv}}")
    # LF and CRLF in one file: DuckDB refuses it, the engine reads an LF copy (a scratch file)
    files["data/mixed.csv"] = csv_of([h("m1"), h("m2")], "\r\n") + h("m3") + "\n"
    # one column ending in blank lines: read through a copy without them (a scratch file)
    files["data/tail.csv"] = csv_of([h("t1"), h("t2")]) + "\n\n"
    files["data/people.ndjson"] = "".join(f'{{"email_hash": "{h(f"n{j}")}"}}\n' for j in range(4))
    files["data/shared.csv"] = csv_of([h(f"shared{j}") for j in range(6)])
    for name, source in {
        "mixed": "csv: {path: ../data/mixed.csv}",
        "tail": "csv: {path: ../data/tail.csv}",
        "people": "ndjson: {path: ../data/people.ndjson}",
        "lake": "parquet: {path: ../data/lake.parquet}",
        "shared-a": "csv: {path: ../data/shared.csv}",
        "shared-b": "csv: {path: ../data/shared.csv}",
        "listed": f"members: [{{email_hash: {h('i1')}}}, {{email_hash: {h('i2')}}}]",
    }.items():
        files[f"segments/{name}.yaml"] = mics_manifest(name, source)
    write_tree(root, files)
    with duckdb.connect() as con:  # not the module's default connection, which others use
        con.execute(
            f"COPY (SELECT sha256('p' || i) AS email_hash FROM range(7) t(i)) "
            f"TO '{root / 'data' / 'lake.parquet'}'"
        )


@pytest.fixture
def where(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The name of the thread each destination was diffed on."""
    seen: dict[str, str] = {}
    real = DuckDBEngine.diff

    def recorded(self: DuckDBEngine, request: Any, *args: Any) -> Any:
        seen[request.address] = threading.current_thread().name
        return real(self, request, *args)

    monkeypatch.setattr(DuckDBEngine, "diff", recorded)
    return seen


def deltas_of(plan_file: Path) -> list[str]:
    with zipfile.ZipFile(plan_file) as archive:
        return sorted(n for n in archive.namelist() if n.startswith("deltas/"))


def snapshots_of(root: Path) -> dict[str, Any]:
    state = json.loads((root / ".segops" / "state.json").read_text())
    return {a: e["snapshot"] for a, e in state["destinations"].items()}


def test_lanes_give_the_plan_deltas_and_snapshots_of_one_diff_at_a_time(
    tmp_path: Path, where: dict[str, str]
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    make(one, 1)
    make(two, 2)
    assert run(one, "plan", "-out", str(tmp_path / "one.segplan"))[0] == 0
    assert not [a for a, t in where.items() if t.startswith("segops-lane")]
    where.clear()
    assert run(two, "plan", "-out", str(tmp_path / "two.segplan"))[0] == 0

    laned = {a for a, t in where.items() if t.startswith("segops-lane")}
    alone = {"shared-a.files-mics", "shared-b.files-mics", "listed.files-mics"}
    assert len(where) == 15
    assert laned == set(where) - alone, "every small file read by one segment is diffed in a lane"
    assert {where[a] for a in alone} == {"MainThread"}

    assert deltas_of(tmp_path / "two.segplan") == deltas_of(tmp_path / "one.segplan")
    assert len(deltas_of(tmp_path / "one.segplan")) == 14  # shared-a and shared-b: one delta
    plans = [plan_json(root)["changes"] for root in (one, two)]
    assert plans[0] == plans[1]
    assert {c["members"]["add"] for c in plans[0]} >= {2, 3, 4, 5, 6, 7, 12}

    for root in (one, two):
        assert run(root, "apply", "--auto-approve")[0] == 0
    assert snapshots_of(two) == snapshots_of(one)
    assert all(c["action"] == "no-op" for c in plan_json(two)["changes"])
    assert not list((two / ".segops").rglob("*.tmp*")), "no scratch file left in the state"


def test_a_large_file_waits_for_the_lanes_and_runs_on_every_thread(
    tmp_path: Path, where: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "SMALL_INPUT_BYTES", 600)  # s5..s7 (and `lake`) are large now
    one, two = tmp_path / "one", tmp_path / "two"
    make(one, 1)
    make(two, 2)
    assert run(two, "plan")[0] == 0
    large = {f"s{i}.files-mics" for i in (5, 6, 7)} | {"lake.files-mics"}
    assert {where[a] for a in large} == {"MainThread"}
    assert {where[f"s{i}.files-mics"] for i in range(5)} != {"MainThread"}
    assert plan_json(two)["changes"] == plan_json(one)["changes"]


@pytest.mark.parametrize(
    "bad",
    [("s1", "s4"), ("s4", "shared"), ("s6",)],
    ids=["two laned", "laned before a serial one", "the last laned"],
)
def test_the_first_bad_source_in_order_is_the_error_whatever_ran_first(
    tmp_path: Path, bad: tuple[str, ...]
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    make(one, 1, bad=bad)
    make(two, 2, bad=bad)
    if "shared" in bad:  # a bad row in the file two segments read: they run after the lanes
        for root in (one, two):
            text = (root / "data" / "shared.csv").read_text()
            (root / "data" / "shared.csv").write_text(text + "not-a-hash\n")
    code_one, out_one, err_one = run(one, "plan")
    code_two, out_two, err_two = run(two, "plan")
    assert code_one == code_two != 0
    assert err_two.replace(str(two), "<ws>") == err_one.replace(str(one), "<ws>")
    first = sorted(bad)[0] if "shared" not in bad else bad[0]
    assert f"data/{first}.csv" in err_two
    assert not list((two / ".segops").glob("state.json")), "nothing was written"


@pytest.fixture
def recorded_on(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The name of the thread each destination's new snapshot was written on."""
    seen: dict[str, str] = {}
    real = loop._recorded

    def named(change: Any, *args: Any) -> Any:
        seen[change.address] = threading.current_thread().name
        return real(change, *args)

    monkeypatch.setattr(loop, "_recorded", named)
    return seen


def without_times(text: str) -> list[str]:
    return [re.sub(r"\d+\.\d+ s", "<t> s", line) for line in text.splitlines()]


def test_apply_writes_small_snapshots_beside_the_next_send_and_reports_in_plan_order(
    tmp_path: Path, recorded_on: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    make(one, 1)
    make(two, 2)
    assert run(two, "plan", "-out", str(tmp_path / "two.segplan"))[0] == 0
    with zipfile.ZipFile(tmp_path / "two.segplan") as archive:
        plan = json.loads(archive.read("plan.json"))
        size = {
            c["address"]: archive.getinfo(f"deltas/{c['delta']['sha256']}.parquet").file_size
            for c in plan["changes"]
        }
    # the merge of a first apply reads the delta alone: the larger half of them are large now
    limit = sorted(size.values())[len(size) // 2]
    monkeypatch.setattr(base, "SMALL_INPUT_BYTES", limit)
    large = {a for a, n in size.items() if n >= limit}
    assert 0 < len(large) < len(size)

    assert run(one, "plan", "-out", str(tmp_path / "one.segplan"))[0] == 0
    code, out_one, _ = run(one, "-v", "apply", str(tmp_path / "one.segplan"))
    assert code == 0
    assert set(recorded_on.values()) == {"MainThread"}, "one thread: no lanes"
    recorded_on.clear()
    code, out_two, _ = run(two, "-v", "apply", str(tmp_path / "two.segplan"))
    assert code == 0
    assert {recorded_on[a] for a in large} == {"MainThread"}
    beside = {a for a, t in recorded_on.items() if t.startswith("segops-record")}
    assert beside == set(recorded_on) - large
    assert without_times(out_two) == without_times(out_one)
    assert out_two.index("s0.files-mics: done") < out_two.index("s7.files-mics: done")
    assert snapshots_of(two) == snapshots_of(one)
    serials = [json.loads((r / ".segops" / "state.json").read_text())["serial"] for r in (one, two)]
    assert serials == [15, 15], "one state write per destination, as without lanes"


def test_a_snapshot_that_cannot_be_stored_fails_apply_and_the_next_apply_converges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    make(one, 1)
    make(two, 2)
    assert run(one, "apply", "--auto-approve")[0] == 0
    real = LocalStateStore.put_snapshot
    stored: list[str] = []

    def fails_on_the_fifth(self: LocalStateStore, path: Path, sha256: str) -> None:
        if len(stored) == 4:
            raise StateError(f"{path}: no space left on device (injected)")
        stored.append(sha256)
        real(self, path, sha256)

    monkeypatch.setattr(LocalStateStore, "put_snapshot", fails_on_the_fifth)
    code, _, err = run(two, "apply", "--auto-approve")
    assert code != 0
    assert "no space left on device (injected)" in err
    monkeypatch.setattr(LocalStateStore, "put_snapshot", real)
    assert run(two, "apply", "--auto-approve")[0] == 0
    assert snapshots_of(two) == snapshots_of(one)
    assert all(c["action"] == "no-op" for c in plan_json(two)["changes"])
