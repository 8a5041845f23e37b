"""How many API operations each planned change takes, and when a platform's quota lets the
last one go out. Pure: each connection's estimator is made (and its quota records read) by
the caller; see `PlatformSpec.estimator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from segops.destinations.platform import Estimator
from segops.model import Plan


def with_schedule(plan: Plan, estimators: Mapping[str, Estimator]) -> Plan:
    """Return `plan` with `operations` and `eta` set on every change that sends members.

    `estimators` are by connection name; the changes of one connection are estimated in
    address order, each after the ones before it (they share the connection's quota).
    """
    changes = []
    for change in plan.changes:
        estimator = estimators.get(change.connection)
        if estimator is None or not change.members.changed:
            changes.append(change)
            continue
        operations, eta = estimator.estimate(change)
        changes.append(replace(change, operations=operations, eta=eta))
    return replace(plan, changes=tuple(changes))
