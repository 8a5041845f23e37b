"""The pure parts of sources read from outside the workspace: key globs, DSN scrubbing,
query text handed to drivers, and the order-independent digest of a query's result."""

from __future__ import annotations

import duckdb
import pytest

from segops.engine.external import ExternalSources
from segops.engine.sources.database import runnable, schema_query, scrub
from segops.engine.sources.objects import StoredObject, key_regex, split_url


@pytest.mark.parametrize(
    ("pattern", "matches", "refuses"),
    [
        ("exports/*.csv", ["exports/a.csv", "exports/.csv"], ["exports/x/a.csv", "exports/a.csvx"]),
        ("exports/**/*.parquet", ["exports/d=1/a.parquet", "exports/a/b/c.parquet"], ["x.parquet"]),
        ("e/part-?.csv", ["e/part-1.csv"], ["e/part-10.csv", "e/part-/.csv"]),
        ("e/[ab].csv", ["e/a.csv", "e/b.csv"], ["e/c.csv"]),
        ("e/[!ab].csv", ["e/c.csv"], ["e/a.csv"]),
        ("e/a+b (1).csv", ["e/a+b (1).csv"], ["e/aab (1).csv"]),
    ],
)
def test_key_globs(pattern: str, matches: list[str], refuses: list[str]) -> None:
    regex = key_regex(pattern)
    assert all(regex.fullmatch(k) for k in matches)
    assert not any(regex.fullmatch(k) for k in refuses)


def test_urls_and_pins() -> None:
    assert split_url("s3://lake/exports/*.csv") == ("lake", "exports/*.csv")
    stored = StoredObject("lake", "a/b.csv", '"9b2cf535f27731c974343645a3985328"', 12)
    assert stored.url == "s3://lake/a/b.csv"
    assert stored.pin == "s3:etag=9b2cf535f27731c974343645a3985328,size=12"


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://reader:s3cr%2Ft@db:5432/crm",
        "host=db user=reader password=s3cr/t dbname=crm",
        "host=db user=reader password='s3cr/t' dbname=crm",
    ],
)
def test_the_dsn_and_its_password_are_scrubbed(dsn: str) -> None:
    forms = "s3cr/t (s3cr%2Ft)" if "%2F" in dsn else "s3cr/t"
    said = scrub(f"failed for {dsn}: password {forms} is wrong", dsn)
    assert "s3cr" not in said and dsn not in said
    assert said.startswith("failed for ***")


def test_queries_lose_their_trailing_semicolons() -> None:
    assert runnable("  SELECT 1;;\n") == "SELECT 1"
    assert schema_query("SELECT a FROM t -- the end\n;") == (
        "SELECT * FROM (\nSELECT a FROM t -- the end\n) AS segops_query LIMIT 0"
    )


def _digest(rows: list[tuple[object, ...]]) -> str:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (email_hash VARCHAR, n INTEGER)")
    if rows:
        con.executemany("INSERT INTO t VALUES (?, ?)", rows)
    return ExternalSources(con, (), {})._digest("t")


def test_the_digest_of_a_result_ignores_order_and_sees_every_row() -> None:
    rows = [(f"{i:064x}", i) for i in range(100)]
    base = _digest(rows)
    assert base.startswith("result:100:")
    assert _digest(list(reversed(rows))) == base
    assert _digest(rows[1:]) != base  # a row removed
    assert _digest([*rows, rows[0]]) != base  # a row repeated
    assert _digest([*rows[:-2], rows[-1], rows[-2]]) == base
    changed = [*rows[:-1], (rows[-1][0], None)]
    assert _digest(changed) != base  # one cell emptied
    swapped = [*rows[:-2], (rows[-2][0], rows[-1][1]), (rows[-1][0], rows[-2][1])]
    assert _digest(swapped) != base  # values moved between rows
    assert _digest([]) == _digest([])
