"""How many API operations each planned change takes, and when a platform's quota lets the
last one go out. Pure: each connection's estimator is made (and its quota records read) by
the caller; see `PlatformSpec.estimator`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from segops.destinations.platform import Estimator, RowsEstimator
from segops.model import DestinationChange, MemberRow, Plan

RowsOf = Callable[[DestinationChange], Iterable[MemberRow]]


def with_schedule(
    plan: Plan, estimators: Mapping[str, Estimator], rows_of: RowsOf | None = None
) -> Plan:
    """Return `plan` with `operations` and `eta` set on every change that sends members.

    `estimators` are by connection name; the changes of one connection are estimated in
    address order, each after the ones before it (they share the connection's quota).
    `rows_of` reads a change's delta, for estimators whose count depends on its rows.
    """
    changes = []
    for change in plan.changes:
        estimator = estimators.get(change.connection)
        if estimator is None or not change.members.changed:
            changes.append(change)
            continue
        operations, eta = _estimate(estimator, change, rows_of)
        changes.append(replace(change, operations=operations, eta=eta))
    return replace(plan, changes=tuple(changes))


def _estimate(
    estimator: Estimator, change: DestinationChange, rows_of: RowsOf | None
) -> tuple[int, str]:
    if rows_of is None or not isinstance(estimator, RowsEstimator):
        return estimator.estimate(change)
    return estimator.estimate_rows(change, lambda: rows_of(change))
