"""Helpers for tests that talk to the mediarithmics emulator: changes, rows, contexts, clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from emulators.mediarithmics import MediarithmicsEmulator
from segops.apply.journal import FileJournal, JournalResources
from segops.destinations import ApplyContext, MemberRow
from segops.destinations.http import RetryPolicy
from segops.destinations.mediarithmics.destination import (
    MediarithmicsDestination,
    make_mediarithmics_client,
)
from segops.model import (
    Action,
    Connection,
    DeltaFile,
    DestinationChange,
    KeyEncoding,
    MemberCounts,
    Platform,
    Scalar,
)

TOKEN = "mics-secret-token-7f3a9c"
ADDRESS = "cart.mics"
DELTA_SHA = "d" * 64
# Clients made by `destination`; tests close them (see `close_clients`).
OPEN_CLIENTS: list[httpx.Client] = []
# Retries without waiting long: faults converge in milliseconds.
FAST_POLICY = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.01, deadline=30, timeout=5)


def fast_sleep(seconds: float) -> None:
    """Sleep a little, whatever was asked: polling stays cheap and tests stay fast."""
    time.sleep(min(seconds, 0.005))


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def settings(**extra: Scalar) -> tuple[tuple[str, Scalar], ...]:
    values: dict[str, Scalar] = {
        "connection": "mics",
        "datamart_id": "1509",
        "expiration_duration": 10080,
        "identifier.kind": "email_hash",
        "segment_technical_name": "cart",
        **extra,
    }
    return tuple(sorted((k, v) for k, v in values.items() if v is not None))


def change(
    before: Any,
    after: Any,
    *,
    attributes: tuple[str, ...] = (),
    delta_sha: str = DELTA_SHA,
    rows: int = 0,
) -> DestinationChange:
    return DestinationChange(
        address=ADDRESS,
        segment="cart",
        connection="mics",
        platform=Platform.MEDIARITHMICS,
        actions=(Action.UPDATE,),
        settings_before=before,
        settings_after=after,
        setting_changes=(),
        members=MemberCounts(add=rows),
        delta=DeltaFile(delta_sha, rows),
        encoding=KeyEncoding.TEXT,
        attributes=attributes,
    )


def indexed(rows: Iterable[MemberRow]) -> Callable[[], Iterator[MemberRow]]:
    """Return a `rows()` callable yielding `rows` with their delta index set."""
    listed = list(rows)

    def produce() -> Iterator[MemberRow]:
        for i, row in enumerate(listed):
            yield MemberRow(row.op, row.key, row.data_bag, row.expiration_ts, i)

    return produce


def keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


def connection(base_url: str, **options: Scalar) -> Connection:
    values: dict[str, Scalar] = {"base_url": base_url, "token_env": "MICS_TOKEN", **options}
    return Connection(
        "mics", Platform.MEDIARITHMICS, Platform.MEDIARITHMICS, tuple(sorted(values.items()))
    )


def context(tmp_path: Path, run: str = "run-1") -> tuple[ApplyContext, FileJournal]:
    journal = FileJournal(tmp_path / "journal.jsonl")
    return ApplyContext(journal, JournalResources(journal), run, fast_sleep), journal


def destination(
    emulator: MediarithmicsEmulator,
    tmp_path: Path,
    *,
    token: str = TOKEN,
    run: str = "run-1",
    policy: RetryPolicy = FAST_POLICY,
    **options: Scalar,
) -> tuple[MediarithmicsDestination, FileJournal, httpx.Client]:
    """Return a destination on the emulator, its journal (in `tmp_path`) and its client."""
    conn = connection(emulator.base_url, **options)
    ctx, journal = context(tmp_path, run)
    client = make_mediarithmics_client(conn, token, policy)
    OPEN_CLIENTS.append(client)
    return MediarithmicsDestination(conn, client, ctx, policy), journal, client


def uploads(emulator: MediarithmicsEmulator) -> list[Any]:
    """Return the execution uploads the emulator served (faulted attempts included)."""
    return [
        r for r in emulator.server.requests if r.method == "POST" and r.path.endswith("/executions")
    ]


def close_clients() -> None:
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()
