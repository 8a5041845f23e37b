"""Measure the ways DuckDB can read a source on S3, per format: the figures behind segops'
choice of pyarrow's S3 filesystem and datasets (docs/benchmarks.md, "Sources on S3").

For each format (Parquet, CSV, NDJSON) it writes N seeded email hashes, puts them as one
object on an S3-compatible server, and times `count(DISTINCT email_hash)` over them:

- local: DuckDB's own reader on the local file (the floor);
- pyarrow: pyarrow's S3FileSystem + pyarrow.dataset scanned by DuckDB as Arrow (segops'
  way: CSV columns as text, NDJSON lines as text parsed by DuckDB), at 1 MiB blocks
  (pyarrow's default) and at segops' block size;
- download: boto3 downloads the object to a local file, DuckDB reads that;
- s3fs: s3fs registered as a DuckDB filesystem, DuckDB's own readers over it (only where
  s3fs is installed: it pins botocore, so measure it from a separate virtualenv against
  the same server with --endpoint).

DuckDB's httpfs extension is not measured: it downloads at first use, which this machine's
network does not allow.

    python bench/s3_formats.py --rows 1000000                 # starts the S3 emulator
    python bench/s3_formats.py --rows 1000000 --endpoint URL  # a server already running
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

BUCKET = "formats"
KEYS = {"parquet": "m.parquet", "csv": "m.csv", "ndjson": "m.ndjson"}
CREDENTIALS = {"key": "bench", "secret": "bench", "region": "us-east-1"}
COUNT = "SELECT count(DISTINCT email_hash) FROM "


@contextlib.contextmanager
def server(endpoint: str | None) -> Iterator[str]:
    if endpoint:
        yield endpoint
        return
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


def write_files(rows: int, folder: Path) -> None:
    con = duckdb.connect()
    query = f"SELECT sha256('m' || i::VARCHAR) AS email_hash, i AS n FROM range({rows}) t(i)"
    con.execute(f"COPY ({query}) TO '{folder / KEYS['parquet']}' (FORMAT parquet)")
    con.execute(f"COPY ({query}) TO '{folder / KEYS['csv']}' (HEADER)")
    con.execute(f"COPY ({query}) TO '{folder / KEYS['ndjson']}' (FORMAT json)")


def upload(endpoint: str, folder: Path) -> None:
    try:
        import boto3
    except ImportError:  # the s3fs virtualenv: upload with s3fs
        fs = _s3fs(endpoint)
        for key in KEYS.values():
            fs.put(str(folder / key), f"{BUCKET}/{key}")
        return
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=CREDENTIALS["region"],
        aws_access_key_id=CREDENTIALS["key"],
        aws_secret_access_key=CREDENTIALS["secret"],
    )
    with contextlib.suppress(Exception):
        client.create_bucket(Bucket=BUCKET)
    for key in KEYS.values():
        client.upload_file(str(folder / key), BUCKET, key)


def _s3fs(endpoint: str):  # type: ignore[no-untyped-def]
    import s3fs

    return s3fs.S3FileSystem(
        key=CREDENTIALS["key"],
        secret=CREDENTIALS["secret"],
        client_kwargs={"endpoint_url": endpoint, "region_name": CREDENTIALS["region"]},
    )


def local_reader(kind: str, path: str) -> str:
    if kind == "parquet":
        return f"read_parquet('{path}')"
    if kind == "csv":
        return f"read_csv('{path}', all_varchar=true)"
    return (
        f"read_json('{path}', format='newline_delimited', "
        "columns={'email_hash': 'JSON', 'n': 'JSON'})"
    )


def pyarrow_way(endpoint: str, kind: str, block: int) -> Callable[[], object]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(
        endpoint_override=endpoint,
        region=CREDENTIALS["region"],
        access_key=CREDENTIALS["key"],
        secret_key=CREDENTIALS["secret"],
        request_timeout=60,
    )
    path = f"{BUCKET}/{KEYS[kind]}"
    con = duckdb.connect()
    if kind == "parquet":
        data = ds.dataset(path, filesystem=fs, format="parquet")
        query = COUNT + "data"
    elif kind == "csv":
        types = {"email_hash": pa.string(), "n": pa.string()}
        fmt = ds.CsvFileFormat(
            read_options=pacsv.ReadOptions(block_size=block),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
        data = ds.dataset(path, filesystem=fs, format=fmt)
        query = COUNT + "data"
    else:
        fmt = ds.CsvFileFormat(
            parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False),
            read_options=pacsv.ReadOptions(block_size=block, column_names=["line"]),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}),
        )
        data = ds.dataset(path, filesystem=fs, format=fmt)
        query = "SELECT count(DISTINCT CAST(line AS JSON) -> '/email_hash') FROM data"
    con.register("data", data)
    return lambda: con.execute(query).fetchall()


def download_way(endpoint: str, kind: str, folder: Path) -> Callable[[], object]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=CREDENTIALS["region"],
        aws_access_key_id=CREDENTIALS["key"],
        aws_secret_access_key=CREDENTIALS["secret"],
    )
    target = folder / f"downloaded-{KEYS[kind]}"

    def run() -> object:
        client.download_file(BUCKET, KEYS[kind], str(target))
        return duckdb.connect().execute(COUNT + local_reader(kind, str(target))).fetchall()

    return run


def s3fs_way(endpoint: str, kind: str) -> Callable[[], object]:
    con = duckdb.connect()
    # DuckDB keeps remote files' blocks in memory across queries: off, or the best of N
    # runs would time a read from memory.
    with contextlib.suppress(duckdb.Error):
        con.execute("SET enable_external_file_cache = false")
    con.register_filesystem(_s3fs(endpoint))
    query = COUNT + local_reader(kind, f"s3://{BUCKET}/{KEYS[kind]}")
    return lambda: con.execute(query).fetchall()


def timed(call: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--endpoint", help="an S3-compatible server already running")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, server(args.endpoint) as endpoint:
        folder = Path(tmp)
        write_files(args.rows, folder)
        upload(endpoint, folder)
        print(f"{args.rows:,} rows; best of {args.repeat}; seconds")
        print(f"{'format':>8} {'MB':>5} {'way':>24} {'time':>7}")
        for kind, key in KEYS.items():
            size = (folder / key).stat().st_size / 1e6
            ways: dict[str, Callable[[], object]] = {}
            local = COUNT + local_reader(kind, str(folder / key))
            ways["local file"] = lambda q=local: duckdb.connect().execute(q).fetchall()
            with contextlib.suppress(ImportError):
                from segops.engine.sources.objects import BLOCK_BYTES

                if kind == "parquet":  # read by row groups: no block size
                    ways["pyarrow dataset"] = pyarrow_way(endpoint, kind, BLOCK_BYTES)
                else:
                    ways["pyarrow, 1 MiB blocks"] = pyarrow_way(endpoint, kind, 1 << 20)
                    ways[f"pyarrow, {BLOCK_BYTES >> 20} MiB blocks"] = pyarrow_way(
                        endpoint, kind, BLOCK_BYTES
                    )
            with contextlib.suppress(ImportError):
                ways["boto3 download + local"] = download_way(endpoint, kind, folder)
            with contextlib.suppress(ImportError):
                ways["s3fs in DuckDB"] = s3fs_way(endpoint, kind)
            for name, call in ways.items():
                print(f"{kind:>8} {size:>5.0f} {name:>24} {timed(call, args.repeat):>7.2f}")


if __name__ == "__main__":
    main()
