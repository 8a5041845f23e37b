"""Benchmark: what each piece of a 1e7 diff costs alone, and the joins segops could do instead.

Writes N sha256 hashes as a one-column CSV (the desired side, 1% churned) and as a sorted
Parquet snapshot of 32-byte keys (the applied side), as segops has them, then times in one
DuckDB process (two threads, segops' settings; best of --repeat):

- the pieces of segops' diff: reading the CSV as text, the checked key (`key_sql`), reading
  the snapshot, the whole FULL OUTER JOIN on BLOB keys;
- the exact joins considered instead: on a 64-bit hash of the key with the key as payload
  (compared after the join), and on four UBIGINT columns; and, for scale, a join on one
  UBIGINT with no payload, which is not exact and is the lower bound of any hash join here;
- the costs of getting integer keys from the text: DuckDB casts and `bytes.fromhex`.

    python bench/floor.py               # 1e7 members (about a minute here)
    python bench/floor.py --n 1e6 --repeat 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from segops.engine import identifiers
from segops.model import Identifier, IdentifierKind

CSV_OPTIONS = (
    "header=true, auto_detect=false, columns={'email_hash': 'VARCHAR'}, delim=',', quote='\"', "
    "escape='\"', strict_mode=true, null_padding=false, encoding='utf-8'"
)


def write_inputs(con: duckdb.DuckDBPyConnection, n: int, folder: Path) -> tuple[str, str]:
    """Write the churned CSV and the snapshot of the base list; return their SQL."""
    csv, snapshot = folder / "members.csv", folder / "snapshot.parquet"
    gone, new = n // 200, n // 200  # 0.5% of the members gone, as many new
    con.execute(
        f"COPY (SELECT sha256((i + {gone})::VARCHAR) AS email_hash FROM range({n}) t(i) "
        f"ORDER BY hash(i)) TO '{csv}' (HEADER)"
    ).fetchall()
    con.execute(
        f"COPY (SELECT unhex(sha256(i::VARCHAR)) AS k FROM range({n - new}) t(i) ORDER BY k) "
        f"TO '{snapshot}' (FORMAT parquet)"
    ).fetchall()
    return f"read_csv('{csv}', {CSV_OPTIONS})", f"read_parquet('{snapshot}')"


def queries(csv: str, snapshot: str) -> dict[str, str]:
    ident = Identifier(IdentifierKind.EMAIL_HASH, "email_hash", format="sha256")
    key = identifiers.key_sql(ident, "email_hash", optimistic=True)
    d = f"(SELECT {key} AS k FROM {csv})"
    s = f"(SELECT k FROM {snapshot})"
    words = ", ".join(f"('0x' || email_hash[{1 + 16 * i}:16])::UBIGINT AS k{i}" for i in range(4))
    unmatched = "WHERE d.k IS NULL OR s.k IS NULL"
    return {
        "CSV read as text": f"SELECT count(*) FROM {csv}",
        "CSV + checked key (key_sql)": f"SELECT min(k) FROM {d}",
        "snapshot read": f"SELECT min(k) FROM {s}",
        "segops' diff: FULL OUTER JOIN on BLOB keys": (
            f"SELECT count(*) FROM {d} d FULL OUTER JOIN {s} s ON d.k = s.k {unmatched}"
        ),
        "exact: join on hash(k), key compared after": (
            f"SELECT count(*) FROM (SELECT k, hash(k) AS h FROM {d}) d FULL OUTER JOIN "
            f"(SELECT k, hash(k) AS h FROM {s}) s ON d.h = s.h {unmatched} OR d.k <> s.k"
        ),
        "CSV + four UBIGINT casts (not checked)": (
            f"SELECT min(k0) FROM (SELECT {words} FROM {csv})"
        ),
    }


def integer_joins(con: duckdb.DuckDBPyConnection, csv: str, snapshot: str) -> dict[str, str]:
    """Tables of the same keys as four UBIGINT columns, and the joins over them."""
    ident = Identifier(IdentifierKind.EMAIL_HASH, "email_hash", format="sha256")
    key = identifiers.key_sql(ident, "email_hash", optimistic=True)
    for name, sql in (("d", f"SELECT {key} AS k FROM {csv}"), ("s", f"SELECT k FROM {snapshot}")):
        words = ", ".join(
            f"('0x' || substr(lower(hex(k)), {1 + 16 * i}, 16))::UBIGINT AS k{i}" for i in range(4)
        )
        con.execute(f"CREATE OR REPLACE TABLE {name}4 AS SELECT {words} FROM ({sql})")
        con.execute(f"CREATE OR REPLACE TABLE {name}b AS {sql}")
    on4 = " AND ".join(f"d.k{i} = s.k{i}" for i in range(4))
    return {
        "tables: FULL OUTER JOIN on BLOB keys": (
            "SELECT count(*) FROM db d FULL OUTER JOIN sb s ON d.k = s.k "
            "WHERE d.k IS NULL OR s.k IS NULL"
        ),
        "tables: on four UBIGINT columns": (
            f"SELECT count(*) FROM d4 d FULL OUTER JOIN s4 s ON {on4} "
            "WHERE d.k0 IS NULL OR s.k0 IS NULL"
        ),
        "tables: on one UBIGINT, no payload (not exact)": (
            "SELECT count(*) FROM d4 d FULL OUTER JOIN s4 s ON d.k0 = s.k0 "
            "WHERE d.k0 IS NULL OR s.k0 IS NULL"
        ),
    }


def best(con: duckdb.DuckDBPyConnection, sql: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    return min(times)


def fromhex(csv_path: Path) -> float:
    """Time Python's bytes.fromhex over the CSV's text (one thread, no checks)."""
    text = csv_path.read_text("ascii")
    body = text[text.index("\n") + 1 :]
    start = time.perf_counter()
    bytes.fromhex(body)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="1e7")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    n = int(float(args.n))
    con = duckdb.connect(config={"threads": 2, "memory_limit": "1.25GB"})
    con.execute("SET preserve_insertion_order = false")
    with tempfile.TemporaryDirectory(prefix="segops-floor-") as tmp:
        csv, snapshot = write_inputs(con, n, Path(tmp))
        print(f"{n:,} members, 1% churn; best of {args.repeat}, two DuckDB threads")
        for label, sql in queries(csv, snapshot).items():
            print(f"  {label:<52} {best(con, sql, args.repeat):6.2f} s", flush=True)
        label = "bytes.fromhex over the CSV (one thread)"
        print(f"  {label:<52} {fromhex(Path(tmp) / 'members.csv'):6.2f} s")
        for label, sql in integer_joins(con, csv, snapshot).items():
            print(f"  {label:<52} {best(con, sql, args.repeat):6.2f} s", flush=True)


if __name__ == "__main__":
    main()
