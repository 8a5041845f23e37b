"""Benchmark: `segops plan` against an ad-hoc DuckDB anti-join of the same two CSV files,
and the same plan with the source on the S3 server and in PostgreSQL.

For each size N it generates two seeded membership files of N 64-hex email hashes (the
second with 1% churn: 0.5% of members gone, as many new), applies the first to a `files`
connection, then times `segops plan` of the second and an ad-hoc two-way DuckDB
anti-join of the two CSV files, in the same run, each in its own process. It prints wall
time (median of --repeat runs) and peak RSS (largest of the runs) for both, and their
ratio. Targets at 1e7: segops <= 0.8x the ad-hoc anti-join, peak RSS <= 1.5 GiB.

With `--sources` naming s3 and/or postgres (default both), the same two membership lists
are then read from elsewhere, and `segops plan` timed beside the local-file plan: from the
S3-compatible server of the tests (emulators/s3.py, moto, in its own process: the CSV as one
object, `csv: {url: s3://...}`), and from a PostgreSQL table (emulators/postgres.py:
`sql: {query: SELECT email_hash FROM members}`).

    python bench/bench.py                              # 1e6 and 1e7, local, s3, postgres
    python bench/bench.py --sizes 100000 --repeat 1    # quick
    python bench/bench.py --sources none               # local files only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emulators.postgres import postgres_server  # noqa: E402

ADHOC = """
import duckdb, sys
con = duckdb.connect()
con.execute(f'''COPY (
  SELECT 'add' AS op, n.email_hash FROM read_csv('{sys.argv[2]}') n
    ANTI JOIN read_csv('{sys.argv[1]}') o ON n.email_hash = o.email_hash
  UNION ALL
  SELECT 'remove', o.email_hash FROM read_csv('{sys.argv[1]}') o
    ANTI JOIN read_csv('{sys.argv[2]}') n ON n.email_hash = o.email_hash
) TO '{sys.argv[3]}' (HEADER)''')
"""

SEGOPS_YAML = """version: 1
manifests: ["segments/*.yaml"]
connections:
  files:
    platform: files
    target: mediarithmics
    path: out
"""

MANIFEST = """apiVersion: segops/v1
kind: Segment
metadata: {name: bench_members}
spec:
  source:
    csv: {path: ../data/members.csv}
  destinations:
    - connection: files
      datamart_id: "1"
      segment_technical_name: bench_members
      identifier: {kind: email_hash, column: email_hash, format: sha256}
"""


def generate(n: int, folder: Path) -> tuple[Path, Path]:
    """Write base.csv and churned.csv with n seeded hashes each; return their paths."""
    base, churned = folder / "base.csv", folder / "churned.csv"
    if base.exists() and churned.exists():
        return base, churned
    con = duckdb.connect()
    gone = n // 200  # 0.5% leave, as many join: 1% churn
    con.execute(
        f"COPY (SELECT sha256('segops-bench-' || i::VARCHAR) AS email_hash FROM range({n}) t(i)) "
        f"TO '{base}' (HEADER)"
    )
    con.execute(
        f"COPY (SELECT sha256('segops-bench-' || i::VARCHAR) AS email_hash FROM range({n}) t(i) "
        f"WHERE i % 200 <> 7 UNION ALL SELECT sha256('segops-bench-new-' || i::VARCHAR) "
        f"FROM range({gone}) t(i)) TO '{churned}' (HEADER)"
    )
    con.close()
    return base, churned


def measure(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Run `cmd`; return (wall seconds, peak RSS bytes) of that process and its children."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    return wall, usage.ru_maxrss * 1024


def run_size(n: int, root: Path, repeat: int) -> dict[str, float]:
    folder = root / f"n{n}"
    (folder / "segments").mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    base, churned = generate(n, folder)
    (folder / "segops.yaml").write_text(SEGOPS_YAML)
    (folder / "segments" / "bench.yaml").write_text(MANIFEST)
    for stale in (folder / ".segops", folder / "out"):
        shutil.rmtree(stale, ignore_errors=True)
    segops = [sys.executable, "-m", "segops", "-C", str(folder)]
    shutil.copyfile(base, folder / "data" / "members.csv")
    apply_wall, apply_rss = measure([*segops, "apply", "--auto-approve"], folder)
    shutil.copyfile(churned, folder / "data" / "members.csv")
    plan = [measure([*segops, "plan"], folder) for _ in range(repeat)]
    adhoc_cmd = [sys.executable, "-c", ADHOC, str(base), str(churned), str(folder / "adhoc.csv")]
    adhoc = [measure(adhoc_cmd, folder) for _ in range(repeat)]
    return {
        "apply_wall": apply_wall,
        "apply_rss": apply_rss,
        "plan_wall": statistics.median(w for w, _ in plan),
        "plan_rss": max(r for _, r in plan),
        "adhoc_wall": statistics.median(w for w, _ in adhoc),
        "adhoc_rss": max(r for _, r in adhoc),
    }


BUCKET = "bench"
SOURCES_YAML = """sources:
  lake: {{type: s3, region: us-east-1, endpoint_url: "{endpoint}"}}
  warehouse: {{type: postgres, dsn_env: BENCH_DSN}}
"""
REMOTE = {
    "s3": "csv: {url: 's3://bench/members.csv', connection: lake}",
    "postgres": "sql: {connection: warehouse, query: SELECT email_hash FROM members}",
}
AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """Run the S3 emulator in its own process; yield its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.s3", "--port", "0", "--bucket", BUCKET],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().split()[3]
    finally:
        proc.terminate()
        proc.wait(30)


def load(kind: str, csv: Path, target: str) -> None:
    """Put the members of `csv` where source `kind` reads them (the object, the table)."""
    if kind == "s3":
        import boto3

        client = boto3.client("s3", endpoint_url=target, **_boto_credentials())
        client.upload_file(str(csv), BUCKET, "members.csv")
        return
    import adbc_driver_postgresql.dbapi as pg

    con = duckdb.connect()
    reader = con.sql(f"SELECT email_hash FROM read_csv('{csv}')").to_arrow_reader()
    with pg.connect(target) as db, db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS members")
        cur.adbc_ingest("members", reader, mode="create")
        db.commit()
    con.close()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_DEFAULT_REGION"],
    }


def run_remote(
    kind: str, n: int, root: Path, repeat: int, target: str, endpoint: str
) -> tuple[float, int]:
    """Apply the base list from `kind`, then time `segops plan` of the churned one there."""
    folder = root / f"n{n}"
    base, churned = generate(n, folder)
    ws = root / f"n{n}-{kind}"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "segments").mkdir(parents=True)
    (ws / "segops.yaml").write_text(SEGOPS_YAML + SOURCES_YAML.format(endpoint=endpoint))
    (ws / "segments" / "bench.yaml").write_text(
        MANIFEST.replace("csv: {path: ../data/members.csv}", REMOTE[kind])
    )
    segops = [sys.executable, "-m", "segops", "-C", str(ws)]
    load(kind, base, target)
    measure([*segops, "apply", "--auto-approve"], ws)
    load(kind, churned, target)
    runs = [measure([*segops, "plan"], ws) for _ in range(repeat)]
    return statistics.median(w for w, _ in runs), max(r for _, r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(".bench"))
    parser.add_argument("--sources", default="s3,postgres", help="s3, postgres, or none")
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    remote = [k for k in args.sources.split(",") if k in REMOTE]
    gib = 1024**3
    print(
        f"{'members':>12} {'first apply':>12} {'segops plan':>12} {'ad-hoc join':>12} "
        f"{'ratio':>6} {'plan RSS':>9} {'ad-hoc RSS':>10}"
    )
    local: dict[int, float] = {}
    for n in sizes:
        r = run_size(n, args.workdir.resolve(), args.repeat)
        local[n] = r["plan_wall"]
        print(
            f"{n:>12,} {r['apply_wall']:>11.2f}s {r['plan_wall']:>11.2f}s "
            f"{r['adhoc_wall']:>11.2f}s {r['plan_wall'] / r['adhoc_wall']:>5.2f}x "
            f"{r['plan_rss'] / gib:>7.2f}GiB {r['adhoc_rss'] / gib:>8.2f}GiB",
            flush=True,
        )
    print("targets at 1e7: ratio <= 0.80x, segops plan peak RSS <= 1.50 GiB")
    if not remote:
        return
    heads = " ".join(f"{k:>11} {k + ' RSS':>13}" for k in remote)
    print(f"\n{'members':>12} {'local file':>11} {heads}")
    os.environ.update(AWS)
    with s3_server() as endpoint, postgres_server() as pg:
        os.environ["BENCH_DSN"] = pg.dsn()
        targets = {"s3": endpoint, "postgres": pg.dsn()}
        for n in sizes:
            times = [
                run_remote(k, n, args.workdir.resolve(), args.repeat, targets[k], endpoint)
                for k in remote
            ]
            cells = " ".join(f"{t:>10.2f}s {r / gib:>10.2f}GiB" for t, r in times)
            print(f"{n:>12,} {local[n]:>10.2f}s {cells}", flush=True)
    print("segops plan, median wall time (and peak RSS): the source as a local file, on S3,")
    print("in PostgreSQL")


if __name__ == "__main__":
    main()
