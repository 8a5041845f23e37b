"""SQL sources against a real PostgreSQL server: plan, apply, data refreshes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulators.postgres import PASSWORD, PostgresServer
from tests.conftest import run
from tests.sources.workspace import DSN_ENV, tree, workspace

N = 100_000


@pytest.fixture(scope="module")
def members(pg: PostgresServer) -> str:
    """A table of N members (sha256 hashes), written once for the module."""
    pg.execute(
        "DROP TABLE IF EXISTS members",
        "CREATE TABLE members AS SELECT i AS id, "
        "encode(sha256(('user' || i || '@example.com')::bytea), 'hex') AS email_hash "
        f"FROM generate_series(1, {N}) AS i",
    )
    return "members"


@pytest.fixture
def dsn(pg: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(DSN_ENV, pg.dsn())
    return pg.dsn()


def sql(query: str) -> str:
    return f"sql: {{connection: warehouse, query: {json.dumps(query)}}}"


def test_a_query_of_1e5_members_is_planned_and_applied(
    tmp_path: Path, members: str, dsn: str
) -> None:
    root = workspace(tmp_path / "ws", None, {"everyone": sql(f"SELECT email_hash FROM {members}")})
    code, out, err = run(root, "plan", "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    (change,) = plan["changes"]
    assert change["members"]["add"] == N
    (pin,) = plan["inputs"]["data"]
    assert pin["segment"] == "everyone" and pin["source"] == "sql:warehouse"
    assert pin["pin"].startswith(f"result:{N}:")
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    assert "Apply complete!" in out
    assert run(root, "plan", "--detailed-exitcode")[0] == 0
    assert PASSWORD not in out + err


def test_the_pin_of_a_result_ignores_row_order_and_sees_every_change(
    tmp_path: Path, pg: PostgresServer, dsn: str
) -> None:
    pg.execute(
        "DROP TABLE IF EXISTS few",
        "CREATE TABLE few (email_hash text, n int)",
        "INSERT INTO few SELECT encode(sha256(i::text::bytea), 'hex'), i "
        "FROM generate_series(1, 50) i",
    )
    root = workspace(tmp_path / "ws", None, {"few": sql("SELECT * FROM few ORDER BY n")})

    def pin(query: str | None = None) -> str:
        if query:
            (root / "segments" / "few.yaml").write_text(
                (root / "segments" / "few.yaml")
                .read_text()
                .replace("SELECT * FROM few ORDER BY n", query)
            )
        code, out, err = run(root, "plan", "--format", "json")
        assert code == 0, err
        return str(json.loads(out)["inputs"]["data"][0]["pin"])

    ordered = pin()
    assert pin("SELECT * FROM few ORDER BY n DESC") == ordered  # same rows, other order
    pg.execute("UPDATE few SET n = 51 WHERE n = 50")  # a value of another column
    assert pin() != ordered
    pg.execute("UPDATE few SET n = 50 WHERE n = 51")
    assert pin() == ordered
    pg.execute("INSERT INTO few SELECT * FROM few WHERE n = 1")  # a duplicate row counts
    assert pin() != ordered


def add_rows(first: int, last: int) -> str:
    return (
        "INSERT INTO cart SELECT encode(sha256(i::text::bytea), 'hex'), i "
        f"FROM generate_series({first}, {last}) i"
    )


@pytest.fixture
def refreshed(tmp_path: Path, pg: PostgresServer, dsn: str) -> tuple[Path, Path]:
    """A table of 40 members, 20 applied, then a plan of 22 saved; returns (root, plan)."""
    pg.execute(
        "DROP TABLE IF EXISTS cart",
        "CREATE TABLE cart AS SELECT encode(sha256(i::text::bytea), 'hex') AS email_hash, i "
        "FROM generate_series(1, 20) i",
    )
    root = workspace(tmp_path / "ws", None, {"cart": sql("SELECT email_hash FROM cart")})
    assert run(root, "apply", "--auto-approve")[0] == 0
    pg.execute(add_rows(21, 22))
    saved = tmp_path / "p.segplan"
    code, _, err = run(root, "plan", "-out", str(saved))
    assert code == 0, err
    return root, saved


def test_rows_changed_after_review_are_diffed_again_and_applied(
    refreshed: tuple[Path, Path], pg: PostgresServer
) -> None:
    root, saved = refreshed
    pg.execute(add_rows(23, 25))
    code, out, err = run(root, "apply", str(saved))
    assert code == 0, err
    assert "cart.out: data changed since review: +5 ~0 -0 (reviewed +2 ~0 -0)" in out
    assert run(root, "plan", "--detailed-exitcode")[0] == 0


def test_rows_changed_after_review_are_refused_with_data_changed_refuse(
    refreshed: tuple[Path, Path], pg: PostgresServer
) -> None:
    root, saved = refreshed
    pg.execute("DELETE FROM cart WHERE i = 3")
    before = tree(root)
    code, out, err = run(root, "apply", str(saved), "--data-changed=refuse")
    assert code == 1, out + err
    assert "its data changed, and --data-changed=refuse" in err
    assert "sql:warehouse changed (data of segment cart)" in err
    assert tree(root) == before


def test_the_query_is_a_definition(refreshed: tuple[Path, Path]) -> None:
    root, saved = refreshed
    manifest = root / "segments" / "cart.yaml"
    manifest.write_text(manifest.read_text().replace("FROM cart", "FROM cart WHERE i > 1"))
    code, _, err = run(root, "apply", str(saved))
    assert code == 1
    assert "(a definition changed)\n  - segments/cart.yaml changed" in err


def test_a_query_file_is_a_definition(tmp_path: Path, pg: PostgresServer, dsn: str) -> None:
    pg.execute(
        "DROP TABLE IF EXISTS vip",
        "CREATE TABLE vip AS SELECT encode(sha256(i::text::bytea), 'hex') AS email_hash "
        "FROM generate_series(1, 30) i",
    )
    root = workspace(
        tmp_path / "ws",
        None,
        {"vip": "sql: {connection: warehouse, query_file: ../queries/vip.sql}"},
    )
    (root / "queries").mkdir()
    (root / "queries" / "vip.sql").write_text("-- the VIPs\nSELECT email_hash FROM vip;\n")
    saved = tmp_path / "p.segplan"
    code, _, err = run(root, "plan", "-out", str(saved))
    assert code == 0, err
    shown = json.loads(run(root, "show", str(saved), "--format", "json")[1])
    paths = [d["path"] for d in shown["inputs"]["definitions"]]
    assert paths == ["queries/vip.sql", "segments/vip.yaml", "segops.yaml"]
    (root / "queries" / "vip.sql").write_text("SELECT email_hash FROM vip LIMIT 10\n")
    code, _, err = run(root, "apply", str(saved))
    assert code == 1
    assert "(a definition changed)\n  - queries/vip.sql changed" in err


BAD = {
    "syntax": (
        "SELEC email_hash FROM members",
        "segments/bad.yaml:5: spec.source.sql.query: PostgreSQL (segops.yaml sources.warehouse) "
        "refused the query: (42601) syntax error at or near",
    ),
    "no-identifier": (
        "SELECT id FROM members",
        "segments/bad.yaml:8: destination out: identifier column 'email_hash' is not in the "
        "result of the query of segments/bad.yaml (columns: id)",
    ),
    "missing-table": (
        "SELECT email_hash FROM nowhere",
        "segments/bad.yaml:5: spec.source.sql.query: PostgreSQL (segops.yaml sources.warehouse) "
        'refused the query: (42P01) relation "nowhere" does not exist',
    ),
    "unreachable": (
        "SELECT email_hash FROM members",
        "segments/bad.yaml:5: spec.source.sql.connection: PostgreSQL (segops.yaml "
        f"sources.warehouse) cannot connect: Connection refused: check the DSN in {DSN_ENV} and "
        "that the server runs",
    ),
    "password": (
        "SELECT email_hash FROM members",
        "segments/bad.yaml:5: spec.source.sql.connection: PostgreSQL (segops.yaml "
        "sources.warehouse) refused the user or the password of the DSN: check the DSN in "
        f"{DSN_ENV}",
    ),
    "no-dsn": (
        "SELECT email_hash FROM members",
        f"segops.yaml: sources.warehouse.dsn_env: environment variable {DSN_ENV} (the DSN of a "
        "postgres source) is not set",
    ),
}


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["apply", "--auto-approve"]])
@pytest.mark.parametrize("defect", sorted(BAD))
def test_bad_input_is_one_clear_line_and_changes_nothing(
    tmp_path: Path,
    pg: PostgresServer,
    members: str,
    monkeypatch: pytest.MonkeyPatch,
    defect: str,
    command: list[str],
) -> None:
    query, message = BAD[defect]
    dsn = pg.dsn()
    if defect == "unreachable":
        dsn = dsn.replace(f":{pg.port}/", ":1/")
    elif defect == "password":
        dsn = pg.dsn("wrong-CANARY-pass")
    if defect != "no-dsn":
        monkeypatch.setenv(DSN_ENV, dsn)
    else:
        monkeypatch.delenv(DSN_ENV, raising=False)
    root = workspace(tmp_path / "ws", None, {"bad": sql(query)})
    before = tree(root)
    code, out, err = run(root, *command)
    assert code == 1, out + err
    assert err.startswith(f"Error: {message}"), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 2, err  # the error, and at most a hint
    assert "Traceback" not in out + err
    for secret in (PASSWORD, "wrong-CANARY-pass", dsn):
        assert secret not in out + err
    assert tree(root) == before


def test_bad_rows_of_a_result_are_counted_by_reason(
    tmp_path: Path, pg: PostgresServer, dsn: str
) -> None:
    pg.execute(
        "DROP TABLE IF EXISTS mixed",
        "CREATE TABLE mixed AS SELECT encode(sha256(i::text::bytea), 'hex') AS email_hash "
        "FROM generate_series(1, 10) i",
        "INSERT INTO mixed VALUES ('NOT-A-HASH'), ('NOT-A-HASH-2'), (NULL)",
    )
    query = "SELECT email_hash FROM mixed"
    root = workspace(tmp_path / "ws", None, {"mixed": sql(query)})
    code, _, err = run(root, "plan")
    assert code == 1
    lines = err.splitlines()
    assert any(
        line.startswith("Error: the query of segments/mixed.yaml: 2 rows: ") for line in lines
    ), err
    assert any(": 1 row: " in line for line in lines), err
    assert lines[-1].startswith(
        "segments/mixed.yaml:5: spec.source: 3 bad rows for destination mixed.out; fix them"
    )
    assert "NOT-A-HASH" not in err
    manifest = root / "segments" / "mixed.yaml"
    manifest.write_text(
        manifest.read_text().replace("  destinations:", "    on_bad_rows: skip\n  destinations:")
    )
    code, out, err = run(root, "plan", "--format", "json")
    assert code == 0, err
    members = json.loads(out)["changes"][0]["members"]
    assert (members["add"], members["skipped"]) == (10, 3)
