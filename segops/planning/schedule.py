"""How many API operations each planned change takes, and when MoEngage's quota lets the
last one go out. Pure: the ledger entries and the clock are read by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace

from segops.destinations.moengage.quota import (
    LedgerEntry,
    QuotaLimits,
    eta_text,
    operation_sizes,
    schedule,
)
from segops.model import Connection, DestinationChange, KeyEncoding, Plan, Platform

DEFAULT_BATCH_LINES = 500_000


def with_schedule(
    plan: Plan,
    connections: Iterable[Connection],
    ledgers: Mapping[str, Iterable[LedgerEntry]],
    now: float,
) -> Plan:
    """Return `plan` with `operations` (and, for MoEngage, `eta`) set on every change."""
    by_name = {c.name: c for c in connections}
    history = {name: list(entries) for name, entries in ledgers.items()}
    changes = []
    for change in plan.changes:
        connection = by_name.get(change.connection)
        if connection is None or not change.members.changed:
            changes.append(change)
            continue
        changes.append(_scheduled(change, connection, history, now))
    return replace(plan, changes=tuple(changes))


def _scheduled(
    change: DestinationChange,
    connection: Connection,
    history: dict[str, list[LedgerEntry]],
    now: float,
) -> DestinationChange:
    counts = change.members
    if change.platform is Platform.MEDIARITHMICS:
        lines = int(connection.option("batch_lines", DEFAULT_BATCH_LINES) or DEFAULT_BATCH_LINES)
        sides = (counts.remove, counts.add + counts.update)
        return replace(change, operations=sum(math.ceil(n / lines) for n in sides))
    limits = QuotaLimits.from_connection(connection)
    key_bytes = 65 if change.encoding is KeyEncoding.HEX else 257  # line length, at most
    sizes = operation_sizes(counts.remove, counts.add, limits, key_bytes)
    if connection.platform is not Platform.MOENGAGE:  # a files connection: no quota applies
        return replace(change, operations=len(sizes))
    entries = history.setdefault(connection.name, [])
    times = schedule(sizes, entries, limits, now)
    entries.extend(
        LedgerEntry(t, "planned", n) for t, n in zip(times, sizes, strict=True) if not math.isinf(t)
    )
    return replace(change, operations=len(sizes), eta=eta_text(times, now))
