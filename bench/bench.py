"""Benchmark: every figure of issue 12, each next to its target and the ad-hoc baseline.

The baseline is an ad-hoc two-way DuckDB anti-join of the same two CSV files, timed in the
same run as segops, each in its own process (ratios stay meaningful on a busy machine).
For each size N it generates two seeded files of N 64-hex email hashes (the second with 1%
churn: 0.5% of members gone, as many new) and measures:

- first apply of the base file to a `files` connection (mediarithmics lines per second);
- `segops plan -out` of the churned file (whole CLI) against the ad-hoc anti-join;
- the no-change plan: the churned file applied, then planned again;
- at the fan-out size, one source read by F destinations against the same plan with one;
- 1,000 small segments of ~100 members: plan, first apply, second plan.

Wall times are medians of the runs, peak RSS the largest. Sizes and counts come from the
command line or the environment (a quick run: SEGOPS_BENCH_SIZES=1e5 SEGOPS_BENCH_SMALL=50):

    SEGOPS_BENCH_SIZES      plan sizes                      default 1e6,1e7
    SEGOPS_BENCH_REPEAT     runs per figure                 default 3
    SEGOPS_BENCH_FANOUT     destinations of the fan-out     default 3 (0: skip)
    SEGOPS_BENCH_FANOUT_N   members of the fan-out source   default 1e6
    SEGOPS_BENCH_SMALL      small segments                  default 1000 (0: skip)
    SEGOPS_BENCH_WORKDIR    where files are generated       default .bench

The slope is the growth of plan time between consecutive sizes, as an exponent
(1.00: linear); put 3e7 and 1e8 in SEGOPS_BENCH_SIZES for the scale figures.

With `--sources` naming s3 and/or postgres (default both; SEGOPS_BENCH_SOURCES), the same
two membership lists are then read from elsewhere, and `segops plan` timed beside the
local-file plan: from the S3-compatible server of the tests (emulators/s3.py, moto, in its
own process: the CSV as one object, `csv: {url: s3://...}`), and from a PostgreSQL table
(emulators/postgres.py: `sql: {query: SELECT email_hash FROM members}`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

GIB = 1024**3
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

DESTINATION = """    - connection: files
      name: {name}
      datamart_id: "1"
      segment_technical_name: {segment}_{name}
      identifier: {{kind: email_hash, column: email_hash, format: sha256}}
"""

MANIFEST = """apiVersion: segops/v1
kind: Segment
metadata: {{name: {segment}}}
spec:
  source:
    csv: {{path: ../data/{file}}}
  destinations:
{destinations}"""


def manifest(segment: str, file: str, destinations: int = 1) -> str:
    names = ["files"] + [f"files{i}" for i in range(1, destinations)]
    body = "".join(DESTINATION.format(name=n, segment=segment) for n in names)
    return MANIFEST.format(segment=segment, file=file, destinations=body)


def generate(n: int, folder: Path) -> tuple[Path, Path]:
    """Write base.csv and churned.csv with n seeded hashes each; return their paths."""
    base, churned = folder / "base.csv", folder / "churned.csv"
    if base.exists() and churned.exists():
        return base, churned
    folder.mkdir(parents=True, exist_ok=True)
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


def measure(cmd: list[str], cwd: Path, log: list[str] | None = None) -> tuple[float, int]:
    """Run `cmd`; return (wall seconds, peak RSS bytes) of that process and its children.

    `log`, when given, receives what the command wrote to stderr.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    if log is not None:
        log.append(stderr)
    return wall, usage.ru_maxrss * 1024


def written_in(stderr: str) -> float:
    """Return the seconds `segops -v apply` says one destination took ("done in X s")."""
    found = re.findall(r"apply: \S+: done in ([0-9.]+) s", stderr)
    if len(found) != 1:
        raise SystemExit(f"expected one destination's apply time in:\n{stderr}")
    return float(found[0])


@dataclass
class Figure:
    wall: float
    rss: int


def repeated(cmd: list[str], cwd: Path, repeat: int) -> Figure:
    runs = [measure(cmd, cwd) for _ in range(repeat)]
    return Figure(statistics.median(w for w, _ in runs), max(r for _, r in runs))


def segops(folder: Path) -> list[str]:
    return [sys.executable, "-m", "segops", "-C", str(folder)]


# From this many members the workspace sets what a team planning such audiences on this
# machine (24 GiB) would: memory_limit 8GB, with which the diff joins by key ranges.
LARGE = 30_000_000
LARGE_ENGINE = "engine: {memory_limit: 8GB}\n"


def workspace(folder: Path, manifests: dict[str, str], large: bool = False) -> None:
    """Lay a fresh workspace at `folder` (data/ is kept); `large`: with LARGE_ENGINE."""
    for stale in (folder / ".segops", folder / "out", folder / "segments"):
        shutil.rmtree(stale, ignore_errors=True)
    (folder / "segments").mkdir(parents=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "segops.yaml").write_text(SEGOPS_YAML + (LARGE_ENGINE if large else ""))
    for name, text in manifests.items():
        (folder / "segments" / f"{name}.yaml").write_text(text)


def run_size(n: int, root: Path, repeat: int) -> dict[str, Figure]:
    """Time first apply, plan, ad-hoc join and the no-change plan at n members."""
    folder = root / f"n{n}"
    base, churned = generate(n, folder)
    workspace(folder, {"bench": manifest("bench_members", "members.csv")}, large=n >= LARGE)
    members = folder / "data" / "members.csv"
    shutil.copyfile(base, members)
    cli = segops(folder)
    log: list[str] = []
    apply = Figure(*measure([*cli, "-v", "apply", "--auto-approve"], folder, log))
    write = written_in(log[0])
    shutil.copyfile(churned, members)
    plan = repeated([*cli, "plan", "-out", str(folder / "plan.segplan")], folder, repeat)
    adhoc_cmd = [sys.executable, "-c", ADHOC, str(base), str(churned), str(folder / "adhoc.csv")]
    adhoc = repeated(adhoc_cmd, folder, repeat)
    measure([*cli, "apply", "--auto-approve"], folder)
    shutil.copyfile(churned, members)  # the same bytes again, a newer file
    unchanged = repeated([*cli, "plan", "-out", str(folder / "plan.segplan")], folder, repeat)
    return {
        "apply": apply,
        "write": Figure(write, apply.rss),
        "plan": plan,
        "adhoc": adhoc,
        "unchanged": unchanged,
    }


def run_fanout(n: int, fanout: int, root: Path, repeat: int) -> tuple[Figure, Figure]:
    """Time the churned plan of one source with one destination, then with `fanout`."""
    folder = root / f"n{n}"
    base, churned = generate(n, folder)
    found = []
    for count in (1, fanout):
        workspace(folder, {"bench": manifest("bench_members", "members.csv", count)})
        shutil.copyfile(base, folder / "data" / "members.csv")
        measure([*segops(folder), "apply", "--auto-approve"], folder)
        shutil.copyfile(churned, folder / "data" / "members.csv")
        found.append(repeated([*segops(folder), "plan", "-out", "p.segplan"], folder, repeat))
    return found[0], found[1]


def run_small(count: int, root: Path, repeat: int) -> dict[str, Figure]:
    """1,000 segments of ~100 members: plan, first apply, second plan (after 1% churn)."""
    folder = root / f"small{count}"
    shutil.rmtree(folder, ignore_errors=True)
    workspace(folder, {f"s{i:04d}": manifest(f"s{i:04d}", f"s{i:04d}.csv") for i in range(count)})
    con = duckdb.connect()
    for i in range(count):
        con.execute(
            f"COPY (SELECT sha256('small-{i}-' || j::VARCHAR) AS email_hash FROM range(100) t(j)) "
            f"TO '{folder / 'data' / f's{i:04d}.csv'}' (HEADER)"
        )
    cli = segops(folder)
    plan = repeated([*cli, "plan"], folder, repeat)
    apply = repeated([*cli, "apply", "--auto-approve"], folder, 1)
    second = repeated([*cli, "plan"], folder, repeat)
    return {"plan": plan, "apply": apply, "second": second}


def env(name: str, default: str) -> str:
    return os.environ.get(f"SEGOPS_BENCH_{name}", default)


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
        manifest("bench", "members.csv").replace("csv: {path: ../data/members.csv}", REMOTE[kind])
    )
    segops = [sys.executable, "-m", "segops", "-C", str(ws)]
    load(kind, base, target)
    measure([*segops, "apply", "--auto-approve"], ws)
    load(kind, churned, target)
    runs = [measure([*segops, "plan"], ws) for _ in range(repeat)]
    return statistics.median(w for w, _ in runs), max(r for _, r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=env("SIZES", "1e6,1e7"))
    parser.add_argument("--repeat", type=int, default=int(env("REPEAT", "3")))
    parser.add_argument("--fanout", type=int, default=int(env("FANOUT", "3")))
    parser.add_argument("--fanout-size", default=env("FANOUT_N", "1e6"))
    parser.add_argument("--small", type=int, default=int(env("SMALL", "1000")))
    parser.add_argument("--workdir", type=Path, default=Path(env("WORKDIR", ".bench")))
    parser.add_argument(
        "--sources", default=env("SOURCES", "s3,postgres"), help="s3, postgres, or none"
    )
    args = parser.parse_args()
    remote = [k for k in args.sources.split(",") if k in REMOTE]
    gib = GIB
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    root = args.workdir.resolve()
    print(
        f"{'members':>12} {'first apply':>11} {'lines/s':>10} {'written/s':>10} "
        f"{'plan -out':>10} {'ad-hoc':>8} "
        f"{'ratio':>6} {'plan RSS':>9} {'ad-hoc RSS':>10} {'no-change':>9} {'slope':>6}",
        flush=True,
    )
    local: dict[int, float] = {}
    previous: tuple[int, float] | None = None
    for n in sizes:
        r = run_size(n, root, args.repeat)
        slope = ""
        if previous is not None:
            slope = f"{math.log(r['plan'].wall / previous[1]) / math.log(n / previous[0]):.2f}"
        previous = (n, r["plan"].wall)
        local[n] = r["plan"].wall
        print(
            f"{n:>12,} {r['apply'].wall:>10.2f}s {n / r['apply'].wall:>10,.0f} "
            f"{n / r['write'].wall:>10,.0f} "
            f"{r['plan'].wall:>9.2f}s {r['adhoc'].wall:>7.2f}s "
            f"{r['plan'].wall / r['adhoc'].wall:>5.2f}x {r['plan'].rss / GIB:>6.2f}GiB "
            f"{r['adhoc'].rss / GIB:>7.2f}GiB {r['unchanged'].wall:>8.2f}s {slope:>6}",
            flush=True,
        )
    print(
        "targets: 1e7 plan <= 0.50x ad-hoc and <= 1.20 GiB; no-change plan <= 1 s at 1e7; "
        "1e8 plan <= 30 s and <= 10 GiB; files apply >= 1,000,000 lines/s\n"
        "(lines/s: over the whole first apply, diff and snapshot included; written/s: over "
        "the files destination's own work, from reading the delta to the files fsynced; "
        f"from {LARGE:,} members the workspace sets {LARGE_ENGINE.strip()})"
    )
    if args.fanout > 1:
        n = int(float(args.fanout_size))
        one, many = run_fanout(n, args.fanout, root, args.repeat)
        print(
            f"fan-out, {n:,} members: plan with 1 destination {one.wall:.2f}s, with "
            f"{args.fanout} {many.wall:.2f}s ({many.wall / one.wall:.2f}x; target: the source "
            f"read once, so well under {args.fanout}x)",
            flush=True,
        )
    if args.small:
        s = run_small(args.small, root, args.repeat)
        print(
            f"{args.small:,} small segments (100 members): plan {s['plan'].wall:.2f}s "
            f"(target 5 s), first apply {s['apply'].wall:.2f}s (target 10 s), second plan "
            f"{s['second'].wall:.2f}s (target 3 s)",
            flush=True,
        )
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
