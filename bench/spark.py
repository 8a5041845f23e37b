"""Benchmark: `segops plan` on the Spark engine (local mode) beside DuckDB, same run, same files.

For each size N: the seeded files of bench/bench.py (N 64-hex email hashes, the second with
1% churn), the first recorded as applied with `segops import` (nothing sent), then
`segops plan -out` of the second timed with each engine, one process each (whole CLI,
start-up included). The two plans must be the same, delta file included (its sha256 name):
the bench stops otherwise. A plan of 1,000 members on Spark gives the engine's fixed cost
(starting the JVM, the session, the jobs' scheduling). Part of what grows with N stays on
the machine running segops whatever the cluster: the digest of the source file (its pin,
BLAKE3) and the check of the applied snapshot (by the BLAKE3 digest stored beside it),
timed here on their own as the serial part. The rest gives the throughput per core, from
which the sizing estimate is computed:

    time at M members on E executors of C cores
        ~ fixed cost + serial part x M / N + M / (throughput per core x E x C)

an estimate that assumes the work spreads over the cores as it does here (a source cut in
pieces of 64 MiB, one task each; the shuffle of the join scaling with the cores).

    SEGOPS_BENCH_SPARK_SIZES    sizes                       default 1e7,1e8
    SEGOPS_BENCH_SPARK_MEMORY   spark.driver.memory         default 12g (local mode: all of Spark)
    SEGOPS_BENCH_WORKDIR        where files are generated   default .bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import GIB, Figure, generate, manifest, measure, segops  # noqa: E402  (bench/bench.py)
from segops.planning.inputs import digest_file  # noqa: E402
from segops.state.snapshots import SnapshotFiles  # noqa: E402

SEGOPS_YAML = """version: 1
manifests: ["segments/*.yaml"]
{engine}
connections:
  files:
    platform: files
    target: mediarithmics
    path: out
"""
ADDRESS = "bench_members.files"


def env(name: str, default: str) -> str:
    return os.environ.get(f"SEGOPS_BENCH_{name}", default)


def engine_yaml(kind: str, memory: str) -> str:
    if kind == "duckdb":
        return "engine: {kind: duckdb}"
    if kind == "duckdb-8GB":  # what a team planning 1e8 members on this 24 GiB machine sets
        return "engine: {kind: duckdb, memory_limit: 8GB}"
    return (
        f"engine:\n  kind: spark\n  master: local[*]\n  conf:\n    spark.driver.memory: {memory}\n"
    )


def lay(folder: Path, kind: str, memory: str) -> None:
    (folder / "segments").mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "segops.yaml").write_text(SEGOPS_YAML.format(engine=engine_yaml(kind, memory)))
    (folder / "segments" / "bench.yaml").write_text(manifest("bench_members", "members.csv"))


def prepared(folder: Path, base: Path, churned: Path, memory: str) -> None:
    """A workspace whose state holds `base` as applied, and whose source is `churned`."""
    for stale in (folder / ".segops", folder / "out", folder / "segments"):
        shutil.rmtree(stale, ignore_errors=True)
    lay(folder, "duckdb", memory)
    members = folder / "data" / "members.csv"
    shutil.copyfile(churned, members)
    wall, _ = measure([*segops(folder), "import", ADDRESS, "--members", str(base)], folder)
    print(f"  state: {base.name} imported as applied in {wall:.1f}s", flush=True)


def tree_rss(pid: int) -> int:
    """Return the resident bytes of process `pid` and all its descendants (the JVM too)."""
    parents: dict[int, int] = {}
    sizes: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
        sizes[int(entry.name)] = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += sizes.get(current, 0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def timed(cmd: list[str], cwd: Path) -> Figure:
    """Run `cmd`; return its wall time and the peak RSS of its process tree (sampled)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.25)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    return Figure(wall, peak)


def plan(folder: Path, kind: str, memory: str) -> tuple[Figure, dict[str, object]]:
    lay(folder, kind, memory)
    out = folder / f"{kind}.segplan"
    figure = timed([*segops(folder), "plan", "-out", str(out)], folder)
    shown = subprocess.run(
        [*segops(folder), "show", str(out), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(shown.stdout)
    change = data["changes"][0] if data["changes"] else {}
    summary = {"delta": change.get("delta"), "members": change.get("members")}
    return figure, summary


def serial_part(folder: Path) -> float:
    """Seconds to pin the source (BLAKE3, one core) and check the applied snapshot (as the
    local store does: by its BLAKE3 digest file, on every core)."""
    start = time.perf_counter()
    digest_file(folder / "data" / "members.csv")
    snapshots = SnapshotFiles(folder / ".segops" / "snapshots")
    for path in snapshots.folder.glob("*.parquet"):
        snapshots.verified(path.stem)
    return time.perf_counter() - start


def fixed_cost(root: Path, memory: str) -> float:
    """The Spark plan's wall time at 1,000 members: what does not grow with the audience."""
    folder = root / "spark-n1000"
    base, churned = generate(1000, folder)
    prepared(folder, base, churned, memory)
    figure, _ = plan(folder, "spark", memory)
    return figure.wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=env("SPARK_SIZES", "1e7,1e8"))
    parser.add_argument("--memory", default=env("SPARK_MEMORY", "12g"))
    parser.add_argument("--workdir", type=Path, default=Path(env("WORKDIR", ".bench")))
    args = parser.parse_args()
    root = args.workdir.resolve()
    cores = os.cpu_count() or 1
    fixed = fixed_cost(root, args.memory)
    print(f"Spark local[*] on {cores} cores; fixed cost (a plan of 1,000 members): {fixed:.1f}s")
    print(
        f"{'members':>12} {'DuckDB plan':>11} {'DuckDB RSS':>10} {'8GB plan':>9} {'8GB RSS':>8} "
        f"{'Spark plan':>10} "
        f"{'Spark RSS':>9} {'ratio':>6} {'serial':>7} {'members/s/core':>14} {'same plan':>9}",
        flush=True,
    )
    per_core: list[tuple[int, float, float]] = []  # (members, serial seconds, rate)
    for n in [int(float(s)) for s in args.sizes.split(",") if s]:
        folder = root / f"n{n}"
        base, churned = generate(n, folder)
        prepared(folder, base, churned, args.memory)
        duck, duck_plan = plan(folder, "duckdb", args.memory)
        roomy, roomy_plan = plan(folder, "duckdb-8GB", args.memory)
        spark, spark_plan = plan(folder, "spark", args.memory)
        if not spark_plan == roomy_plan == duck_plan:
            raise SystemExit(
                f"the plans differ at {n:,}: {duck_plan}, {roomy_plan} (8GB), {spark_plan}"
            )
        serial = serial_part(folder)
        growing = spark.wall - fixed - serial
        rate = n / growing / cores if growing > 1 else 0.0  # under 1 s: noise, not a rate
        if rate:
            per_core.append((n, serial, rate))
        print(
            f"{n:>12,} {duck.wall:>10.2f}s {duck.rss / GIB:>7.2f}GiB "
            f"{roomy.wall:>8.2f}s {roomy.rss / GIB:>5.2f}GiB {spark.wall:>9.2f}s "
            f"{spark.rss / GIB:>6.2f}GiB {spark.wall / duck.wall:>5.2f}x {serial:>6.1f}s "
            f"{f'{rate:,.0f}' if rate else '-':>14} {'yes':>9}",
            flush=True,
        )
    if not per_core:
        print("no size large enough for a throughput: give larger --sizes")
        return
    n, serial, rate = per_core[-1]
    print(
        "RSS: peak of the segops process and its children (the JVM, Spark's Python workers), "
        "sampled every 0.25 s; 8GB: DuckDB with memory_limit 8GB (from 3e7 members it joins "
        "by key ranges); serial: the source's pin and the snapshot's check; "
        "same plan: the delta file's sha256 and the counts"
    )
    print("target (issue 12): a 1e8 plan on one machine (2 cores, 24 GiB) <= 30 s, <= 10 GiB")
    at = 1e9
    kept = serial * at / n
    print(
        f"estimate at 1e9 members (an estimate, from the largest size: {rate:,.0f} members/s "
        f"per core, {kept:.0f}s serial on the machine running segops):"
    )
    for executors, each in ((10, 4), (50, 4), (100, 8)):
        seconds = fixed + kept + at / (rate * executors * each)
        print(f"  {executors:>3} executors x {each} cores: about {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
