"""Sources on S3 against a real S3-compatible server: formats, globs, hive partitions, pins,
data refreshes between review and apply, bad rows and bad settings."""

from __future__ import annotations

import io
import json
import socket
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emulators.s3 import check_credentials
from tests.conftest import run, with_engine, write_tree
from tests.s3server import S3Server
from tests.s3state import SECRET_KEY
from tests.sources.workspace import BUCKET, h, tree, workspace

HASHES = [h(f"user{i}@example.com") for i in range(60)]


@pytest.fixture(scope="module")
def lake(s3: S3Server) -> S3Server:
    s3.create_bucket(BUCKET)
    return s3


@pytest.fixture
def prefix() -> str:
    return f"exports/{uuid.uuid4().hex[:8]}"


def put(server: S3Server, key: str, data: bytes) -> None:
    server.client().put_object(Bucket=BUCKET, Key=key, Body=data)


def csv_bytes(hashes: list[str]) -> bytes:
    return ("email_hash\n" + "".join(f"{x}\n" for x in hashes)).encode()


def ndjson_bytes(hashes: list[str]) -> bytes:
    return "".join(json.dumps({"email_hash": x}) + "\n" for x in hashes).encode()


def parquet_bytes(hashes: list[str]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"email_hash": pa.array(hashes, pa.string())}), out)
    return out.getvalue()


FORMATS = {"csv": csv_bytes, "ndjson": ndjson_bytes, "parquet": parquet_bytes}


def url_source(kind: str, url: str, extra: str = "") -> str:
    return f"{kind}: {{url: '{url}', connection: lake{extra}}}"


def plan_json(root: Path, *args: str) -> dict:  # type: ignore[type-arg]
    code, out, err = run(root, "plan", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_objects_read_as_the_same_file_would_be(
    tmp_path: Path, lake: S3Server, prefix: str, kind: str
) -> None:
    """A glob over two objects gives the members of one local file holding both parts."""
    encode = FORMATS[kind]
    put(lake, f"{prefix}/part-0.{kind}", encode(HASHES[:30]))
    put(lake, f"{prefix}/part-1.{kind}", encode(HASHES[25:50]))  # 5 members in both
    put(lake, f"{prefix}/other.txt", b"not matched")
    url = f"s3://{BUCKET}/{prefix}/*.{kind}"
    root = workspace(tmp_path / "s3", lake.endpoint_url, {"cart": url_source(kind, url)})
    local = workspace(tmp_path / "local", None, {"cart": f"{kind}: {{path: ../data/m.{kind}}}"})
    (local / "data").mkdir()
    (local / "data" / f"m.{kind}").write_bytes(encode(HASHES[:30] + HASHES[25:50]))
    remote, here = plan_json(root), plan_json(local)
    assert remote["changes"][0]["members"] == here["changes"][0]["members"]
    assert remote["changes"][0]["members"]["add"] == 50
    assert remote["changes"][0]["delta"] == here["changes"][0]["delta"]  # the same bytes
    pins = remote["inputs"]["data"]
    assert [p["source"] for p in pins] == [
        f"s3://{BUCKET}/{prefix}/part-0.{kind}",
        f"s3://{BUCKET}/{prefix}/part-1.{kind}",
    ]
    head = lake.client().head_object(Bucket=BUCKET, Key=f"{prefix}/part-0.{kind}")
    etag, size = head["ETag"].strip('"'), head["ContentLength"]
    assert pins[0]["pin"] == f"s3:etag={etag},size={size}"
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    assert run(root, "plan", "--detailed-exitcode")[0] == 0


def test_hive_partitions_become_columns(tmp_path: Path, lake: S3Server, prefix: str) -> None:
    for day in ("2026-01-01", "2026-01-02"):
        for country in ("fr", "de"):
            rows = [x for i, x in enumerate(HASHES) if i % 2 == (country == "fr")]
            put(lake, f"{prefix}/day={day}/country={country}/m.parquet", parquet_bytes(rows))
    url = f"s3://{BUCKET}/{prefix}/**/*.parquet"
    source = url_source("parquet", url, ", hive_partitioning: true")
    root = workspace(tmp_path / "ws", lake.endpoint_url, {"cart": source})
    # The partition column is the identifier's attribute: a key of the rows it read.
    manifest = root / "segments" / "cart.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            "identifier: {kind: email_hash, column: email_hash, format: sha256}",
            'identifier: {kind: user_account_id, column: country}\n      compartment_id: "1"',
        )
    )
    plan = plan_json(root)
    assert plan["changes"][0]["members"]["add"] == 2  # fr and de
    assert len(plan["inputs"]["data"]) == 4


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_bad_rows_name_the_object_and_its_line(
    tmp_path: Path, lake: S3Server, prefix: str, kind: str
) -> None:
    encode = FORMATS[kind]
    put(lake, f"{prefix}/a.{kind}", encode(HASHES[:5]))
    put(lake, f"{prefix}/b.{kind}", encode(HASHES[5:8] + ["not-a-hash"] + HASHES[8:10]))
    url = f"s3://{BUCKET}/{prefix}/*.{kind}"
    root = workspace(tmp_path / "ws", lake.endpoint_url, {"cart": url_source(kind, url)})
    code, out, err = run(root, "plan")
    assert code == 1
    where = {
        "csv": f"s3://{BUCKET}/{prefix}/b.csv:5: ",  # line 5: the header is line 1
        "ndjson": f"s3://{BUCKET}/{prefix}/b.ndjson:4: ",
        "parquet": f"s3://{BUCKET}/{prefix}/b.parquet: ",
    }[kind]
    assert f"\n{where}" in err or err.startswith(f"Error: {where}"), err
    if kind == "parquet":
        assert "(row 4)" in err, err
    assert "1 bad row for destination cart.out" in err
    assert "Traceback" not in err


def test_a_broken_line_names_the_object_and_its_line(
    tmp_path: Path, lake: S3Server, prefix: str
) -> None:
    lines = [json.dumps({"email_hash": x}) for x in HASHES[:4]]
    lines.insert(2, '{"email_hash": "x"')  # cut short
    put(lake, f"{prefix}/a.ndjson", ("\n".join(lines) + "\n").encode())
    url = f"s3://{BUCKET}/{prefix}/a.ndjson"
    root = workspace(tmp_path / "ws", lake.endpoint_url, {"cart": url_source("ndjson", url)})
    code, _, err = run(root, "plan")
    assert code == 1
    assert err.startswith(f"Error: {url}:3: is not valid JSON"), err


@pytest.fixture
def reviewed(tmp_path: Path, lake: S3Server, prefix: str) -> tuple[Path, Path, str]:
    """20 members applied from one object, then 22 planned and saved: (root, plan, key)."""
    key = f"{prefix}/members.parquet"
    put(lake, key, parquet_bytes(HASHES[:20]))
    source = url_source("parquet", f"s3://{BUCKET}/{key}")
    root = workspace(tmp_path / "ws", lake.endpoint_url, {"cart": source})
    assert run(root, "apply", "--auto-approve")[0] == 0
    put(lake, key, parquet_bytes(HASHES[:22]))
    saved = tmp_path / "p.segplan"
    code, _, err = run(root, "plan", "-out", str(saved))
    assert code == 0, err
    return root, saved, key


def test_an_object_rewritten_after_review_is_diffed_again(
    reviewed: tuple[Path, Path, str], lake: S3Server
) -> None:
    root, saved, key = reviewed
    put(lake, key, parquet_bytes(HASHES[:25]))  # the nightly export ran again
    code, out, err = run(root, "apply", str(saved))
    assert code == 0, err
    assert "cart.out: data changed since review: +5 ~0 -0 (reviewed +2 ~0 -0)" in out
    assert run(root, "plan", "--detailed-exitcode")[0] == 0


def test_an_object_rewritten_after_review_is_refused_on_request(
    reviewed: tuple[Path, Path, str], lake: S3Server
) -> None:
    root, saved, key = reviewed
    put(lake, key, parquet_bytes(HASHES[:21]))
    before = tree(root)
    code, out, err = run(root, "apply", str(saved), "--data-changed=refuse")
    assert code == 1, out + err
    assert f"s3://{BUCKET}/{key} changed (data of segment cart)" in err
    assert tree(root) == before


def test_an_unchanged_object_applies_the_reviewed_plan(reviewed: tuple[Path, Path, str]) -> None:
    root, saved, _ = reviewed
    code, out, err = run(root, "apply", str(saved), "--data-changed=refuse")
    assert code == 0, err
    assert "data changed" not in out


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


KEY = "spec.source.parquet.url"
DEFECTS = {
    "unreachable": f"segments/cart.yaml:5: {KEY}: cannot reach S3 at http://127.0.0.1:",
    "credentials": f"segments/cart.yaml:5: {KEY}: S3 refused the AWS credentials in use for "
    f"s3://{BUCKET}/ (InvalidAccessKeyId)",
    "bucket": f"segments/cart.yaml:5: {KEY}: the bucket 'no-such-bucket' does not exist at http",
    "no-object": f"segments/cart.yaml:5: {KEY}: no object matches s3://{BUCKET}/",
    "no-credentials": f"segments/cart.yaml:5: {KEY}: no AWS credentials found",
}


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["apply", "--auto-approve"]])
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_bad_settings_are_one_clear_line_and_change_nothing(
    tmp_path: Path,
    lake: S3Server,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    defect: str,
    command: list[str],
) -> None:
    put(lake, f"{prefix}/m.parquet", parquet_bytes(HASHES[:3]))
    bucket, endpoint, glob = BUCKET, lake.endpoint_url, f"{prefix}/*.parquet"
    if defect == "unreachable":
        endpoint = f"http://127.0.0.1:{_closed_port()}"
    elif defect == "bucket":
        bucket = "no-such-bucket"
    elif defect == "no-object":
        glob = f"{prefix}/*.csv.parquet"
    elif defect == "no-credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    source = url_source("parquet", f"s3://{bucket}/{glob}")
    root = workspace(tmp_path / "ws", endpoint, {"cart": source})
    before = tree(root)
    if defect == "credentials":
        check_credentials(lake.endpoint_url, True)
    try:
        code, out, err = run(root, *command)
    finally:
        if defect == "credentials":
            check_credentials(lake.endpoint_url, False)
    assert code == 1, out + err
    assert err.startswith(f"Error: {DEFECTS[defect]}"), err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err and SECRET_KEY not in out + err
    assert tree(root) == before


def test_a_source_connection_must_be_of_the_right_type(tmp_path: Path) -> None:
    root = workspace(
        tmp_path / "ws",
        "http://127.0.0.1:9",
        {
            "a": "parquet: {url: 's3://lake/x.parquet', connection: warehouse}",
            "b": "sql: {connection: lake, query: SELECT 1}",
            "c": "csv: {url: 's3://lake/x.csv', connection: nowhere}",
        },
    )
    write_tree(root, {})
    code, _, err = run(root, "validate")
    assert code == 1
    assert (
        "segments/a.yaml:6: spec.source.parquet.connection: source connection 'warehouse' is "
        "of type postgres, not s3" in err
    )
    assert (
        "segments/b.yaml:6: spec.source.sql.connection: source connection 'lake' is of type s3"
        in err
    )
    assert (
        "segments/c.yaml:6: spec.source.csv.connection: unknown source connection 'nowhere'" in err
    )


def test_a_csv_row_of_too_many_fields_names_the_object_and_its_line(
    tmp_path: Path, lake: S3Server, prefix: str
) -> None:
    rows = [*HASHES[:3], f"{HASHES[3]},extra", *HASHES[4:6]]
    put(lake, f"{prefix}/a.csv", csv_bytes(rows))
    url = f"s3://{BUCKET}/{prefix}/a.csv"
    root = workspace(tmp_path / "ws", lake.endpoint_url, {"cart": url_source("csv", url)})
    code, _, err = run(root, "plan")
    assert code == 1
    assert err.startswith(f"Error: {url}:5: has 2 fields where the header has 1"), err
    assert HASHES[3] not in err  # never a member's value


@pytest.mark.parametrize(
    ("kind", "hive"),
    [("csv", False), ("parquet", False), ("ndjson", False), ("csv", True), ("ndjson", True)],
    ids=["csv", "parquet", "ndjson", "csv, hive partitions", "ndjson, hive partitions"],
)
def test_objects_read_by_spark_tasks_give_the_plan_duckdb_gives(
    tmp_path: Path,
    lake: S3Server,
    prefix: str,
    kind: str,
    hive: bool,
    spark_remote: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the Spark engine each object is read by a task of its own, from S3: same plan.

    An NDJSON listing's keys are found by tasks too (one per object), and hive partitions
    are read with the types the whole listing's paths give them (here: a partition column
    is the members' attribute).
    """
    from segops.engine import spark

    fallbacks: list[str] = []
    notes: list[str] = []
    monkeypatch.setattr(spark.log, "warning", lambda text, *args: fallbacks.append(text % args))
    monkeypatch.setattr(spark.log, "info", lambda text, *args: notes.append(text % args))
    encode = FORMATS[kind]
    for part in range(3):
        folder = f"{prefix}/day={part + 1}" if hive else prefix
        end = part * 20 + (20 if hive else 25)  # overlapping parts, but not across days
        put(lake, f"{folder}/part-{part}.{kind}", encode(HASHES[part * 20 : end]))
    url = f"s3://{BUCKET}/{prefix}/{'**/' if hive else ''}*.{kind}"
    source = url_source(kind, url, ", hive_partitioning: true" if hive else "")
    roots = {
        name: workspace(tmp_path / name, lake.endpoint_url, {"cart": source})
        for name in ("duckdb", "spark")
    }
    for root in roots.values() if hive else ():  # the partition (an integer) as an attribute
        manifest = root / "segments" / "cart.yaml"
        manifest.write_text(manifest.read_text() + "      expiration_ts: {column: day}\n")
    yaml_path = roots["spark"] / "segops.yaml"
    yaml_path.write_text(
        with_engine(yaml_path.read_text(), {"kind": "spark", "remote": spark_remote})
    )
    on_spark, on_duckdb = plan_json(roots["spark"]), plan_json(roots["duckdb"])
    assert fallbacks == [] and notes == ["cart.out: 3 objects read by Spark tasks"]
    assert on_spark["changes"] == on_duckdb["changes"]  # the same delta bytes and counts
    assert on_spark["inputs"]["data"] == on_duckdb["inputs"]["data"]  # pinned by ETag
    assert on_spark["changes"][0]["members"]["add"] == 60


def test_a_bad_ndjson_line_is_named_when_spark_reads_the_objects(
    tmp_path: Path, lake: S3Server, prefix: str, spark_remote: str
) -> None:
    """Spark's key scan fails on a line that is not a JSON object: this machine reads the
    objects again and names the object and the line, never the value."""
    put(lake, f"{prefix}/a.ndjson", ndjson_bytes(HASHES[:5]))
    put(lake, f"{prefix}/b.ndjson", ndjson_bytes(HASHES[5:8]) + b"[1, 2]\n")
    url = f"s3://{BUCKET}/{prefix}/*.ndjson"
    root = workspace(tmp_path / "ws", lake.endpoint_url, {"cart": url_source("ndjson", url)})
    yaml_path = root / "segops.yaml"
    yaml_path.write_text(
        with_engine(yaml_path.read_text(), {"kind": "spark", "remote": spark_remote})
    )
    code, _, err = run(root, "plan")
    assert code == 1
    assert f"s3://{BUCKET}/{prefix}/b.ndjson:4" in err, err
