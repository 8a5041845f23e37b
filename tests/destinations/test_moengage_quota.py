"""The MoEngage quota: rolling windows, the pure scheduler, and the ledger on disk."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import pytest

from segops.destinations.moengage.quota import (
    DAY,
    HOUR,
    LedgerEntry,
    QuotaLedger,
    QuotaLimits,
    eta_text,
    operation_sizes,
    schedule,
)
from segops.errors import DestinationError
from segops.model import Connection, Platform
from segops.state.records import FileRecords

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
LIMITS = QuotaLimits()


def entries(*times: float, users: int = 1) -> list[LedgerEntry]:
    return [LedgerEntry(t, "add-users", users) for t in times]


def test_ten_operations_an_hour_then_the_window_rolls() -> None:
    times = schedule([1] * 12, [], LIMITS, NOW)
    assert times[:10] == [NOW] * 10
    assert times[10:] == [NOW + HOUR] * 2


def test_the_hour_is_the_last_hour_not_the_clock_hour() -> None:
    history = entries(*(NOW - 3000 + i * 60 for i in range(10)))  # 10 in the last 50 minutes
    assert schedule([1], history, LIMITS, NOW) == [NOW - 3000 + HOUR]
    # an entry exactly one hour old no longer counts
    assert schedule([1], entries(*[NOW - HOUR] * 10), LIMITS, NOW) == [NOW]


def test_a_hundred_operations_a_day() -> None:
    history = entries(*(NOW - DAY + 3600 + i * 600 for i in range(100)))  # spread over a day
    first = history[0].at
    assert schedule([1], history, LIMITS, NOW) == [first + DAY]
    many = schedule([1] * 101, [], LIMITS, NOW)
    assert many[99] == NOW + 9 * HOUR and many[100] == NOW + DAY


def test_two_million_users_a_day() -> None:
    assert schedule([1_500_000, 600_000], [], LIMITS, NOW) == [NOW, NOW + DAY]
    history = entries(NOW - 100, users=1_999_999)
    assert schedule([1, 2], history, LIMITS, NOW) == [NOW, NOW - 100 + DAY]


def test_an_operation_over_the_daily_user_limit_never_fits() -> None:
    times = schedule([1, 2_000_001, 1], [], LIMITS, NOW)
    assert times[0] == NOW and math.isinf(times[1]) and math.isinf(times[2])
    assert eta_text(times, NOW).startswith("never")


def test_schedule_is_pure_and_ignores_old_entries() -> None:
    history = entries(NOW - 2 * DAY, NOW - DAY)
    before = list(history)
    assert schedule([1, 1], history, QuotaLimits(ops_per_hour=1), NOW) == [NOW, NOW + HOUR]
    assert history == before


def test_operation_sizes_split_by_the_daily_users_and_the_file_size() -> None:
    assert operation_sizes(0, 0, LIMITS) == []
    assert operation_sizes(10, 3, LIMITS) == [10, 3]
    assert operation_sizes(0, 4_500_000, LIMITS) == [2_000_000, 2_000_000, 500_000]
    assert operation_sizes(0, 1_000_000, LIMITS, key_bytes=257) == [544_747, 455_253]


def test_eta_text() -> None:
    assert eta_text([], NOW) == ""
    assert eta_text([NOW], NOW) == "now"
    assert eta_text([NOW, NOW + HOUR], NOW) == "now; the last of 2 by 2027-01-15 09:00 UTC"
    assert eta_text([NOW + 90], NOW) == "2027-01-15 08:01 UTC"


def test_limits_from_connection_options() -> None:
    options = (("quota.ops_per_hour", 3), ("quota.users_per_day", 50))
    connection = Connection("moe", Platform.MOENGAGE, Platform.MOENGAGE, options)
    assert QuotaLimits.from_connection(connection) == QuotaLimits(3, 100, 50)


def test_ledger_records_durably_and_answers_from_disk(tmp_path: Path) -> None:
    path = tmp_path / ".segops" / "moengage-ledger-moe.json"
    ledger = QuotaLedger(FileRecords(path.parent), path.name, QuotaLimits(ops_per_hour=2))
    assert ledger.allows(10, NOW) and ledger.entries == ()
    ledger.record("create", 10, NOW)
    ledger.record("add-users", 5, NOW + 1)
    assert not ledger.allows(1, NOW + 2)
    assert ledger.next_slot(1, NOW + 2) == NOW + HOUR

    again = QuotaLedger(FileRecords(path.parent), path.name, QuotaLimits(ops_per_hour=2))
    assert again.entries == (LedgerEntry(NOW, "create", 10), LedgerEntry(NOW + 1, "add-users", 5))
    assert again.allows(1, NOW + HOUR + 1)
    document = json.loads(path.read_text())
    assert document["format_version"] == 1 and len(document["entries"]) == 2
    assert not list(path.parent.glob(".*.tmp")), "written through a temporary file"


def test_ledger_forgets_what_is_older_than_a_day(tmp_path: Path) -> None:
    ledger = QuotaLedger(FileRecords(tmp_path), "ledger.json")
    ledger.record("create", 1, NOW)
    ledger.record("add-users", 1, NOW + DAY + 1)
    assert [e.at for e in QuotaLedger(FileRecords(tmp_path), "ledger.json").entries] == [
        NOW + DAY + 1
    ]


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"format_version": 2, "entries": []}', '{"format_version": 1}']
)
def test_a_damaged_ledger_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(text)
    with pytest.raises(DestinationError, match="ledger"):
        QuotaLedger(FileRecords(path.parent), path.name)


# MoEngage's refusals (429)


@pytest.mark.parametrize(
    "retry_after,until", [(None, NOW + HOUR), (600.0, NOW + 600), (0.0, NOW), (7200.0, NOW + 7200)]
)
def test_a_refusal_blocks_until_retry_after_or_the_hourly_window(
    tmp_path: Path, retry_after: float | None, until: float
) -> None:
    ledger = QuotaLedger(FileRecords(tmp_path), "ledger.json")
    refusal = ledger.refuse(NOW, retry_after)
    assert refusal.until == until
    assert ledger.next_slot(1, NOW) == until
    assert not ledger.allows(1, NOW + 1) or until <= NOW + 1
    again = QuotaLedger(FileRecords(tmp_path), "ledger.json")  # on disk
    assert again.refusals == (refusal,) and again.next_slot(1, NOW) == until


@pytest.mark.parametrize("sent_in_hour,learned_limit", [(0, 10), (1, 1), (4, 4), (9, 9), (12, 10)])
def test_a_refusal_teaches_the_hourly_limit_moengage_showed(
    tmp_path: Path, sent_in_hour: int, learned_limit: int
) -> None:
    ledger = QuotaLedger(FileRecords(tmp_path), "ledger.json", QuotaLimits(ops_per_hour=10))
    for i in range(sent_in_hour):
        ledger.record("add-users", 1, NOW - 3000 + i)
    refusal = ledger.refuse(NOW, None)
    assert refusal.hour_ops == sent_in_hour
    limits, not_before = ledger.effective(NOW)
    assert limits.ops_per_hour == learned_limit and not_before == NOW + HOUR
    # a day later the refusal teaches nothing any more
    assert ledger.effective(NOW + DAY + 1)[0].ops_per_hour == 10
    # a Retry-After says when: it teaches no limit
    told = QuotaLedger(FileRecords(tmp_path), "told.json", QuotaLimits(ops_per_hour=10))
    for i in range(sent_in_hour):
        told.record("add-users", 1, NOW - 3000 + i)
    assert told.refuse(NOW, 60.0).hour_ops == 0
    assert told.effective(NOW)[0].ops_per_hour == 10


def test_after_a_refusal_the_plan_eta_comes_from_it(tmp_path: Path) -> None:
    ledger = QuotaLedger(FileRecords(tmp_path), "ledger.json")
    for i in range(3):
        ledger.record("add-users", 1, NOW - 600 + i)
    ledger.refuse(NOW, None)  # MoEngage allows 3 an hour, not 10
    times = ledger.times([1] * 4, NOW + 60)
    assert times[0] == NOW + HOUR  # not "now", as the configured 10 an hour would say
    assert times == [NOW + HOUR] * 3 + [NOW + 2 * HOUR]
    assert schedule([1], [], LIMITS, NOW, not_before=NOW + 5) == [NOW + 5]


def test_a_ledger_written_before_refusals_were_kept_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(
        json.dumps({"format_version": 1, "entries": [{"at": NOW, "kind": "create", "users": 3}]})
    )
    ledger = QuotaLedger(FileRecords(path.parent), path.name)
    assert ledger.refusals == () and len(ledger.entries) == 1


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_ledger_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        QuotaLedger(FileRecords(tmp_path / "state"), "ledger.json").record("create", 3, NOW)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "state" / "ledger.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
