"""SQL sources: a query's result, streamed from a database into DuckDB as Arrow batches.

Each kind of database is one `Driver`: it opens a connection from a DSN and returns the
query's result as a pyarrow RecordBatchReader (no row ever becomes a Python object).
PostgreSQL is read through ADBC (adbc-driver-postgresql), which streams the result with
COPY in Arrow batches. Another database (Snowflake, BigQuery with their ADBC drivers) is
one more Driver in `DRIVERS`; only PostgreSQL is tested.

The DSN is a secret (it holds the password): it is read from the environment variable the
segops.yaml `sources` entry names, handed only to the driver, and scrubbed from every
message a driver or the database returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from segops.errors import Problem, SourceError
from segops.model import Source, SourceConnection, SourceConnectionKind

if TYPE_CHECKING:
    import pyarrow as pa

# SQLSTATE classes whose message is about the query's text, never about row values.
_QUERY_CLASSES = ("42", "3F", "0A")
_AUTH = ("28",)
_KEYWORD_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


class Result(Protocol):
    """A query running on a database: its result as batches, and how to end it."""

    reader: pa.RecordBatchReader

    def close(self) -> None: ...


class Driver(Protocol):
    """One kind of database: run a query, return its result as Arrow batches."""

    title: str

    def check_installed(self) -> None:
        """Raise ImportError when the driver's package is not installed."""
        ...

    def run(self, dsn: str, query: str) -> Result: ...

    def failure(self, exc: Exception) -> tuple[str, str | None] | None:
        """Return (stage, message) for an error of this driver; None when it is not one.

        stage is "connect" or "query"; the message may still hold the DSN (scrubbed after).
        """
        ...


@dataclass
class _AdbcResult:
    connection: Any
    cursor: Any
    reader: pa.RecordBatchReader

    def close(self) -> None:
        for part in (self.cursor, self.connection):
            try:
                part.close()
            except Exception:  # noqa: BLE001 - closing after a failure must not hide it
                pass


class PostgresDriver:
    title = "PostgreSQL"

    def check_installed(self) -> None:
        import adbc_driver_postgresql.dbapi  # noqa: F401

    def run(self, dsn: str, query: str) -> Result:
        import adbc_driver_postgresql.dbapi as pg

        connection = pg.connect(dsn)
        try:
            cursor = connection.cursor()
            cursor.execute(query)
            return _AdbcResult(connection, cursor, cursor.fetch_record_batch())
        except BaseException:
            connection.close()
            raise

    def failure(self, exc: Exception) -> tuple[str, str | None] | None:
        import adbc_driver_manager

        if not isinstance(exc, adbc_driver_manager.Error):
            return None
        state = str(getattr(exc, "sqlstate", "") or "")
        text = str(exc)
        if "Failed to connect" in text or state.startswith(("08", *_AUTH)):
            return "connect", _connect_message(state, text)
        if state.startswith(_QUERY_CLASSES):
            return "query", f"({state}) {_server_message(text)}"
        if state:
            return "query", f"failed while running (SQLSTATE {state})"
        return "query", _server_message(text)


DRIVERS: Mapping[SourceConnectionKind, Driver] = {SourceConnectionKind.POSTGRES: PostgresDriver()}


def _connect_message(state: str, text: str) -> str:
    if state.startswith(_AUTH) or "password authentication failed" in text:
        return "refused the user or the password of the DSN"
    found = re.search(r"failed: (.*)", text)
    reason = found[1] if found else _server_message(text)
    return f"cannot connect: {reason}"


def _server_message(text: str) -> str:
    """Return the database's own words: the first line, without the driver's prefixes."""
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    line = re.sub(r"^[A-Z_]+: ", "", line)  # ADBC status, e.g. "INVALID_ARGUMENT: "
    line = re.sub(r"^\[libpq\] ", "", line)
    if "ERROR:" in line:  # the server's words after the driver's ("could not begin COPY")
        line = line.rsplit("ERROR:", 1)[1]
    return line.strip()[:300]


def scrub(text: str, dsn: str) -> str:
    """Return `text` without the DSN or any part of it that is a secret."""
    secrets = {dsn}
    try:
        parts = urlsplit(dsn)
        if parts.password:
            secrets |= {parts.password, unquote(parts.password)}
        if parts.netloc:
            secrets.add(parts.netloc)
    except ValueError:
        pass
    for found in _KEYWORD_PASSWORD.finditer(dsn):
        secrets |= {found[1], found[1].strip("'")}
    for secret in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def dsn_of(connection: SourceConnection, env: Mapping[str, str]) -> str:
    """Return the DSN from the environment variable the connection names."""
    name = connection.dsn_env or ""
    value = env.get(name, "") if name else ""
    if not value:
        raise SourceError(
            [
                Problem(
                    "segops.yaml",
                    f"environment variable {name or '(none named)'} (the DSN of a "
                    f"{connection.kind.value} source) is not set",
                    None,
                    f"sources.{connection.name}.dsn_env",
                )
            ]
        )
    return value


def run_query(
    source: Source, connection: SourceConnection, env: Mapping[str, str]
) -> tuple[Result, str]:
    """Start `source`'s query; return the running result and the DSN (to scrub messages)."""
    assert source.query is not None, "a query file that cannot be read stops the loader"
    driver = DRIVERS[connection.kind]
    dsn = dsn_of(connection, env)
    try:
        driver.check_installed()
    except ImportError:
        message = (
            f"{driver.title} sources need segops' {connection.kind.value} extra: "
            f"pip install 'segops[{connection.kind.value}]'"
        )
        raise SourceError(
            [Problem(source.manifest, message, source.line, "spec.source.sql.connection")]
        ) from None
    try:
        return driver.run(dsn, runnable(source.query)), dsn
    except Exception as exc:
        raise failure(source, connection, exc, dsn) from None


def failure(source: Source, connection: SourceConnection, exc: Exception, dsn: str) -> SourceError:
    """Return the SourceError for a driver's error: the manifest's key, the database's words."""
    driver = DRIVERS[connection.kind]
    found = driver.failure(exc)
    stage, message = found if found else ("query", None)
    # Only the driver's and the database's words can hold a part of the DSN.
    said = scrub(message, dsn) if message is not None else type(exc).__name__
    via = f"{driver.title} (segops.yaml sources.{connection.name})"
    if stage == "connect":
        text = f"{via} {said}: check the DSN in {connection.dsn_env} and that the server runs"
        key = "spec.source.sql.connection"
    else:
        key = "spec.source.sql.query_file" if source.query_file else "spec.source.sql.query"
        text = f"{via} refused the query: {said}"
    return SourceError([Problem(source.manifest, text, source.line, key)])


def runnable(query: str) -> str:
    """Return the query without trailing semicolons (drivers wrap it, e.g. in a COPY)."""
    return query.strip().rstrip(";").rstrip()


def schema_query(query: str) -> str:
    """Return a query of `query`'s columns and no rows (for `validate`)."""
    return f"SELECT * FROM (\n{runnable(query)}\n) AS segops_query LIMIT 0"
