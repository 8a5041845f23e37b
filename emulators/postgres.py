"""A real PostgreSQL server for local use, the docs, the tests and the benchmark: initdb +
pg_ctl into a temporary folder, listening on 127.0.0.1 only; stopped and removed at exit.

    python -m emulators.postgres --port 5432 --load members=data/members.csv

The binaries are found in SEGOPS_PG_BIN, on PATH, or in Debian's /usr/lib/postgresql/*/bin
(`.ci/run` installs them from the package registry when the machine has none). PostgreSQL
refuses to run as root: as root, the server runs as the `postgres` user (or `nobody`).
The superuser has a password (scram-sha-256 over TCP), so a DSN holds a secret, as in use.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER = "segops"
PASSWORD = "pg-CANARY-secret-5e1d"  # the tests' password: the secrets tests look for it


def pg_bin() -> Path | None:
    """Return the folder of initdb, pg_ctl and postgres, or None when there is none."""
    candidates = [os.environ.get("SEGOPS_PG_BIN", "")]
    found = shutil.which("initdb")
    candidates.append(str(Path(found).resolve().parent) if found else "")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in filter(None, candidates):
        if all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


@dataclass(frozen=True)
class PostgresServer:
    port: int
    password: str = PASSWORD
    database: str = "postgres"

    def dsn(self, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{USER}:{secret}@127.0.0.1:{self.port}/{self.database}"

    def load_csv(self, table: str, path: Path) -> int:
        """Create `table` from a CSV file with a header (every column text); return its rows."""
        import adbc_driver_postgresql.dbapi as pg
        import pyarrow as pa
        import pyarrow.csv as pacsv

        with path.open("rb") as handle:
            names = handle.readline().decode("utf-8-sig").strip().split(",")
        types = {name: pa.string() for name in names}
        data = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
        with pg.connect(self.dsn()) as con, con.cursor() as cur:
            cur.adbc_ingest(table, data, mode="replace")
            con.commit()
        return int(data.num_rows)

    def execute(self, *statements: str) -> None:
        """Run statements on the server (through ADBC, as segops reads it)."""
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.dsn()) as con:
            with con.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
            con.commit()


def _free_port(port: int = 0) -> int:
    if port:
        return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> dict[str, Any]:
    """Return subprocess arguments that drop root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists")


@contextmanager
def postgres_server(port: int = 0, password: str = PASSWORD) -> Iterator[PostgresServer]:
    """Run a PostgreSQL server on 127.0.0.1:`port` (0: a free one) for the block."""
    binaries = pg_bin()
    if binaries is None:
        raise RuntimeError(
            "PostgreSQL binaries not found: install them (`.ci/run` does: apt-get install "
            "postgresql) or set SEGOPS_PG_BIN to the folder of initdb"
        )
    drop = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="segops-pg-"))
    data, log, secret = folder / "data", folder / "server.log", folder / "pw"
    secret.write_text(password + "\n")
    if drop:
        for path in (folder, secret):
            os.chown(path, drop["user"], drop["group"])
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    subprocess.run(
        [str(binaries / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={secret}"]
        + ["--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        env=env,
        **drop,
    )
    port = _free_port(port)
    options = f"-p {port} -k '' -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [str(binaries / "pg_ctl"), "-D", str(data)]
    started = subprocess.run(
        [*ctl, "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
        capture_output=True,
        env=env,
        **drop,
    )
    if started.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start:\n{started.stderr.decode()}\n{text}")
    try:
        yield PostgresServer(port, password)
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, env=env, **drop)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--password", default="segops", help=f"of the user {USER}")
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="TABLE=FILE",
        help="create a table from a CSV file with a header (every column text)",
    )
    args = parser.parse_args(argv)
    with postgres_server(args.port, args.password) as server:
        for item in args.load:
            table, _, file = item.partition("=")
            server.load_csv(table, Path(file))
        print(
            f"PostgreSQL emulator on postgresql://127.0.0.1:{server.port}/postgres "
            f"(user {USER}; Ctrl-C stops)",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
