"""The Spark member engine: chosen by one line of segops.yaml, the same results as DuckDB's.

The planner cases run on both engines in tests/test_cases.py and a kill during apply on
Spark in tests/crash/test_kill_apply.py; here: applies in sequence (Spark merges the
snapshots) give the same state and the same files sent, a driver of segops' own in local
mode, and the engine settings' errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, SEGOPS_YAML, mics_manifest, run, with_engine, write_tree
from tests.s3server import S3Server, s3_server
from tests.s3state import s3_state, set_aws_env, with_state


def _hash(i: int) -> str:
    return hashlib.sha256(f"user{i}@example.com".encode()).hexdigest()


def _generation(root: Path, members: dict[int, int]) -> None:
    """Write the sources of one generation: member i with its basket size (NDJSON, CSV,
    Parquet), so that a later generation adds, removes and updates members."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"email_hash": _hash(i), "bag": {"items": n}, "ts": 1_900_000_000_000 + i})
        for i, n in sorted(members.items())
    ]
    (data / "carts.ndjson").write_text("".join(f"{line}\n" for line in lines))
    rows = "".join(f"{_hash(i)},{n}\n" for i, n in sorted(members.items()))
    (data / "carts.csv").write_text("email_hash,items\n" + rows)
    kept = [_hash(i) for i in sorted(members) if "0a" not in _hash(i)]
    table = pa.table({"email_hash": kept})
    pq.write_table(table, data / "carts.parquet", row_group_size=40)  # several row groups


def _workspace(root: Path, engine: dict[str, str]) -> None:
    bags = """\
    - connection: files-mics-csv
      datamart_id: "1509"
      segment_technical_name: basket_csv
      identifier: {kind: email_hash, column: email_hash, format: sha256}
"""
    write_tree(
        root,
        {
            "segops.yaml": with_engine(SEGOPS_YAML, engine) if engine else SEGOPS_YAML,
            "segments/bags.yaml": mics_manifest(
                "bags",
                "ndjson: {path: ../data/carts.ndjson}",
                extra="      data_bag: {column: bag}\n      expiration_ts: {column: ts}\n",
            ),
            # one CSV source read by two destinations (read once, kept by Spark)
            "segments/basket.yaml": mics_manifest("basket", "csv: {path: ../data/carts.csv}")
            + bags,
            "segments/pq.yaml": mics_manifest("pq", "parquet: {path: ../data/carts.parquet}"),
        },
    )


def _state(root: Path) -> list[tuple[str, str, int]]:
    state = json.loads((root / ".segops" / "state.json").read_text())
    return sorted(
        (address, d["snapshot"]["sha256"], d["member_count"])
        for address, d in state["destinations"].items()
    )


def _sent(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root / "out")): p.read_bytes()
        for p in sorted((root / "out").rglob("*"))
        if p.is_file()
    }


def test_applies_in_sequence_give_the_same_state_and_files_on_both_engines(
    tmp_path: Path, spark_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segops.engine import spark, spark_tasks

    fallbacks: list[str] = []
    monkeypatch.setattr(spark.log, "warning", lambda text, *args: fallbacks.append(text % args))
    monkeypatch.setattr(spark.log, "info", lambda text, *args: fallbacks.append(text % args))
    monkeypatch.setattr(spark_tasks, "PIECE_BYTES", 2048)  # several tasks per file
    rng = random.Random(7)
    generations = [{i: rng.randint(1, 3) for i in range(300)}]
    for _ in range(1):  # then: some leave, some join, some baskets change
        members = {i: n for i, n in generations[-1].items() if rng.random() > 0.1}
        members.update({i: rng.randint(1, 3) for i in rng.sample(range(300, 600), 40)})
        for i in rng.sample(sorted(members), 30):
            members[i] += 1
        generations.append(members)
    engines = {"duckdb": {}, "spark": {"kind": "spark", "remote": spark_remote}}
    states: dict[str, list[list[tuple[str, str, int]]]] = {name: [] for name in engines}
    for name, engine in engines.items():
        root = tmp_path / name
        _workspace(root, engine)
        for members in generations:
            _generation(root, members)
            code, _, err = run(root, "apply", "--auto-approve")
            assert code == 0, err
            states[name].append(_state(root))
        code, out, err = run(root, "plan", "--detailed-exitcode")
        assert code == 0, out + err  # converged: nothing left to send
    assert fallbacks == []  # every diff and merge ran on Spark, every file in pieces
    assert states["spark"] == states["duckdb"]
    assert len(states["spark"][-1]) == 4
    assert _sent(tmp_path / "spark") == _sent(tmp_path / "duckdb")
    snapshots = sorted((tmp_path / "duckdb" / ".segops" / "snapshots").iterdir())
    spark_snapshots = sorted((tmp_path / "spark" / ".segops" / "snapshots").iterdir())
    assert [p.name for p in snapshots] == [p.name for p in spark_snapshots]


def test_a_driver_of_segops_own_in_local_mode_keeps_the_terminal_clean(tmp_path: Path) -> None:
    """`master: local[1]`: segops starts Spark itself; nothing of the JVM reaches the
    terminal, and the plan is DuckDB's, byte for byte."""
    outputs = {}
    for name, engine in {"duckdb": {}, "spark": {"kind": "spark", "master": "local[1]"}}.items():
        root = tmp_path / name
        _workspace(root, engine)
        _generation(root, {i: 1 + i % 3 for i in range(50)})
        result = subprocess.run(
            [sys.executable, "-m", "segops", "-C", str(root), "plan", "--format", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        for line in result.stderr.splitlines():  # segops' progress, nothing of the JVM's
            assert line.startswith("Diffing members: "), result.stderr
        plan = json.loads(result.stdout)
        plan["state"]["lineage"] = None
        definitions = plan["inputs"]["definitions"]  # segops.yaml differs by its engine line
        plan["inputs"]["definitions"] = [d for d in definitions if d["path"] != "segops.yaml"]
        outputs[name] = plan
    assert outputs["spark"] == outputs["duckdb"]
    assert {c["address"] for c in outputs["spark"]["changes"]} == {
        "bags.files-mics",
        "basket.files-mics",
        "basket.files-mics-csv",
        "pq.files-mics",
    }


@pytest.mark.parametrize(
    "engine,key,message",
    [
        ({"master": "local[1]"}, "engine.master", "is read only with `kind: spark`"),
        ({"conf": {"spark.executor.memory": "2g"}}, "engine.conf", "only with `kind: spark`"),
        (
            {"kind": "spark", "master": "local[1]", "remote": "sc://127.0.0.1:15002"},
            "engine.remote",
            "give a master URL or a Spark Connect remote, not both",
        ),
        (
            {"kind": "spark", "remote": "sc://127.0.0.1:15002/;token=abc"},
            "engine.remote",
            "SEGOPS_SPARK_TOKEN",
        ),
        ({"kind": "spark", "remote": "http://127.0.0.1:15002"}, "engine.remote", "sc://"),
        ({"kind": "flink"}, "engine.kind", "duckdb"),
        ({"kind": "spark", "conf": {"executor.memory": "2g"}}, "engine.conf", "spark"),
    ],
)
def test_engine_settings_are_checked(
    workspace: Path, engine: dict[str, object], key: str, message: str
) -> None:
    write_tree(
        workspace,
        {
            "segops.yaml": with_engine(SEGOPS_YAML, engine),
            "segments/s.yaml": mics_manifest("s", "csv: {path: ../data/m.csv}"),
            "data/m.csv": f"email_hash\n{_hash(1)}\n",
        },
    )
    code, out, err = run(workspace, "validate")
    assert code == 1, out + err
    assert "segops.yaml" in err and key in err and message in err, err
    assert "abc" not in err  # a token given in the file is not repeated


def test_an_unreachable_spark_server_is_one_clear_error_and_changes_nothing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write_tree(
        workspace,
        {
            "segops.yaml": with_engine(
                SEGOPS_YAML, {"kind": "spark", "remote": f"sc://127.0.0.1:{port}"}
            ),
            "segments/s.yaml": mics_manifest("s", "csv: {path: ../data/m.csv}"),
            "data/m.csv": f"email_hash\n{_hash(1)}\n",
        },
    )
    monkeypatch.setenv("SEGOPS_SPARK_TOKEN", "CANARY-spark-token")
    code, out, err = run(workspace, "apply", "--auto-approve")
    assert code == 1
    assert (
        f"the Spark engine could not start on the Spark Connect server sc://127.0.0.1:{port}" in err
    )
    assert "CANARY" not in out + err
    assert not (workspace / "out").exists()
    assert not (workspace / ".segops" / "state.json").exists()


def test_without_pyspark_the_error_says_how_to_install_it(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real(name, *a)
    )
    write_tree(
        workspace,
        {
            "segops.yaml": with_engine(SEGOPS_YAML, {"kind": "spark"}),
            "segments/s.yaml": mics_manifest("s", "csv: {path: ../data/m.csv}"),
            "data/m.csv": f"email_hash\n{_hash(1)}\n",
        },
    )
    code, _, err = run(workspace, "plan")
    assert code == 1
    assert "pyspark is not installed" in err and "pip install -e '.[spark]'" in err


# Spark SQL sources: `sources: {lake: {type: spark}}`, `sql: {connection: lake, query: ...}`

LAKE = "sources:\n  lake: {type: spark}\n"
ATTRS = "      data_bag: {column: bag}\n      expiration_ts: {column: ts}\n"


def _members(path: Path, members: dict[int, int]) -> None:
    """Write member i with its basket size as Parquet (several row groups)."""
    ordered = sorted(members.items())
    table = pa.table(
        {
            "email_hash": [_hash(i) for i, _ in ordered],
            "bag": [json.dumps({"items": n}) for _, n in ordered],
            "ts": pa.array([1_900_000_000_000 + i for i, _ in ordered], pa.int64()),
        }
    )
    pq.write_table(table, path, row_group_size=64)


def test_a_spark_sql_source_sends_what_duckdb_sends_for_the_same_rows(
    tmp_path: Path, spark_remote: str
) -> None:
    lake = tmp_path / "lake.parquet"
    query = f"SELECT email_hash, bag, ts FROM parquet.`{lake}` WHERE ts > 0"
    spark_yaml = with_engine(SEGOPS_YAML + LAKE, {"kind": "spark", "remote": spark_remote})
    roots = {"duckdb": tmp_path / "duckdb", "spark": tmp_path / "spark"}
    write_tree(
        roots["duckdb"],
        {
            "segops.yaml": SEGOPS_YAML,
            "segments/s.yaml": mics_manifest(
                "s", "parquet: {path: ../data/lake.parquet}", extra=ATTRS
            ),
        },
    )
    write_tree(
        roots["spark"],
        {
            "segops.yaml": spark_yaml,
            "segments/s.yaml": mics_manifest(
                "s", f"sql: {{connection: lake, query: {json.dumps(query)}}}", extra=ATTRS
            ),
        },
    )
    rng = random.Random(11)
    first = {i: rng.randint(1, 3) for i in range(400)}
    second = {i: n + (i % 7 == 0) for i, n in first.items() if i % 10}  # leave, change
    second.update({i: 1 for i in range(400, 450)})  # join
    for members in (first, second):
        _members(lake, members)
        (roots["duckdb"] / "data").mkdir(exist_ok=True)
        _members(roots["duckdb"] / "data" / "lake.parquet", members)
        for root in roots.values():
            code, out, err = run(root, "apply", "--auto-approve")
            assert code == 0, out + err
        assert _state(roots["spark"]) == _state(roots["duckdb"])
        assert _sent(roots["spark"]) == _sent(roots["duckdb"])
    code, out, err = run(roots["spark"], "plan", "-out", "p.segplan", "--detailed-exitcode")
    assert code == 0, out + err  # converged
    code, out, err = run(roots["spark"], "show", "--format", "json", "p.segplan")
    assert code == 0, err
    pins = json.loads(out)["inputs"]["data"]
    assert [(p["source"], p["pin"].split(":")[:2]) for p in pins] == [
        ("sql:lake", ["result", str(len(second))])
    ]


def test_a_bad_row_of_a_spark_sql_source_is_named_and_nothing_is_sent(
    workspace: Path, spark_remote: str
) -> None:
    query = f"SELECT '{_hash(1)}' AS email_hash UNION ALL SELECT 'nothex' AS email_hash"
    write_tree(
        workspace,
        {
            "segops.yaml": with_engine(
                SEGOPS_YAML + LAKE, {"kind": "spark", "remote": spark_remote}
            ),
            "segments/s.yaml": mics_manifest(
                "s", f"sql: {{connection: lake, query: {json.dumps(query)}}}"
            ),
        },
    )
    code, out, err = run(workspace, "apply", "--auto-approve")
    assert code == 1, out + err
    assert "the query of segments/s.yaml" in err and "1 bad row" in err, err
    assert "is not 64 lowercase hex characters (sha256)" in err and "nothex" not in err, err
    assert not (workspace / "out").exists()


def test_a_query_spark_refuses_names_the_manifest_key(workspace: Path, spark_remote: str) -> None:
    write_tree(
        workspace,
        {
            "segops.yaml": with_engine(
                SEGOPS_YAML + LAKE, {"kind": "spark", "remote": spark_remote}
            ),
            "segments/s.yaml": mics_manifest(
                "s", 'sql: {connection: lake, query: "SELECT email_hash FROM no_such_table"}'
            ),
        },
    )
    code, out, err = run(workspace, "validate")
    assert code == 1, out + err
    assert "segments/s.yaml" in err and "spec.source.sql.query" in err, err
    assert "Spark could not run the query" in err and "no_such_table" in err, err
    assert "Traceback" not in err


def test_a_spark_source_needs_the_spark_engine(workspace: Path) -> None:
    write_tree(
        workspace,
        {
            "segops.yaml": SEGOPS_YAML + LAKE,
            "segments/s.yaml": mics_manifest(
                "s", 'sql: {connection: lake, query: "SELECT email_hash FROM members"}'
            ),
        },
    )
    code, out, err = run(workspace, "validate")
    assert code == 1, out + err
    assert "segops.yaml" in err and "sources.lake.type" in err and "kind: spark" in err, err


@pytest.fixture(scope="module")
def state_server() -> Iterator[S3Server]:
    """An S3 server in this process: its request log tells who read and wrote what."""
    with s3_server() as server:
        server.create_bucket(STATE_BUCKET)
        yield server


STATE_BUCKET = "segops-spark-state"


def _s3_state(server: S3Server, prefix: str) -> list[tuple[str, str, int]]:
    got = server.client().get_object(Bucket=STATE_BUCKET, Key=f"{prefix}/state.json")
    state = json.loads(got["Body"].read())
    return sorted(
        (address, d["snapshot"]["sha256"], d["member_count"])
        for address, d in state["destinations"].items()
    )


def _keys(server: S3Server, prefix: str) -> list[str]:
    listed = server.client().list_objects_v2(Bucket=STATE_BUCKET, Prefix=prefix)
    return sorted(str(o["Key"]).removeprefix(prefix) for o in listed.get("Contents", ()))


def test_with_the_state_on_s3_executors_read_snapshots_and_write_parts_there(
    tmp_path: Path, spark_remote: str, state_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's executors do not see this machine's disk: with the state on S3, they read
    the state's snapshots from it, and the diff's and the merge's rows come back as Parquet
    parts they write under the state's prefix (deleted at the end); the same state, the
    same snapshots and the same files as the DuckDB engine with the same S3 state."""
    set_aws_env(monkeypatch, tmp_path)
    rng = random.Random(11)
    first = {i: rng.randint(1, 3) for i in range(200)}
    second = {i: n for i, n in first.items() if rng.random() > 0.1}
    second.update({i: rng.randint(1, 3) for i in rng.sample(range(200, 400), 25)})
    for i in rng.sample(sorted(second), 20):
        second[i] += 1
    engines = {"duckdb": {}, "spark": {"kind": "spark", "remote": spark_remote}}
    prefixes = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in engines}
    states: dict[str, list[list[tuple[str, str, int]]]] = {name: [] for name in engines}
    for name, engine in engines.items():
        root = tmp_path / name
        _workspace(root, engine)
        state = s3_state(STATE_BUCKET, prefixes[name], state_server.endpoint_url)
        (root / "segops.yaml").write_text(with_state((root / "segops.yaml").read_text(), state))
        for members in (first, second):
            _generation(root, members)
            code, _, err = run(root, "apply", "--auto-approve")
            assert code == 0, err
            states[name].append(_s3_state(state_server, prefixes[name]))
        code, out, err = run(root, "plan", "--detailed-exitcode")
        assert code == 0, out + err
        assert not (root / ".segops").exists(), "the state is on S3 only"
    assert states["spark"] == states["duckdb"]
    assert _sent(tmp_path / "spark") == _sent(tmp_path / "duckdb")
    snapshots = {
        n: [k for k in _keys(state_server, p) if "snapshots/" in k] for n, p in prefixes.items()
    }
    assert snapshots["spark"] == snapshots["duckdb"] != []

    def by_tasks(method: str, prefix: str, part: str) -> list[str]:
        """Paths under `prefix` that pyarrow (the AWS SDK for C++) asked for with `method`."""
        return [
            path
            for verb, path, agent in state_server.requests
            if verb == method
            and path.startswith(f"/{STATE_BUCKET}/{prefix}/{part}")
            and "aws-sdk-cpp" in agent.lower()
        ]

    spark = prefixes["spark"]
    read = {p.rsplit("/", 1)[1] for p in by_tasks("GET", spark, "snapshots/")}
    first_snapshots = {f"{sha}.parquet" for _, sha, _ in states["spark"][0]}
    assert read == first_snapshots, "the second generation's diffs and merges read them"
    parts = by_tasks("PUT", spark, "work/") + by_tasks("POST", spark, "work/")
    assert any("/part-" in p for p in parts), "the executors wrote the rows there"
    assert not [k for k in _keys(state_server, spark) if k.startswith("/work/")]
    assert not by_tasks("GET", prefixes["duckdb"], "")  # DuckDB reads its own copies
