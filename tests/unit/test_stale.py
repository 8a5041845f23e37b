"""Why a saved plan is stale, in words: never a Python `None` in the message."""

from __future__ import annotations

import pytest

from segops.model import Plan
from segops.planning.planner import stale_reasons
from segops.state.model import State

LINEAGE = "c4382fe5-662c-4aa7-8f21-b29b5f4e2174"
OTHER = "0b7e8a44-95ab-4ad4-9a8e-2f6c3f0f6a11"


def plan(lineage: str | None, serial: int) -> Plan:
    return Plan("0.1.0", lineage, serial, (), (), ())


@pytest.mark.parametrize(
    "made,now,reason",
    [
        (
            plan(None, 0),
            State(LINEAGE, 1, "0.1.0"),
            f"the state lineage is {LINEAGE}, the plan was made when there was no state",
        ),
        (plan(LINEAGE, 3), None, f"there is no state now, the plan was made for lineage {LINEAGE}"),
        (
            plan(LINEAGE, 3),
            State(OTHER, 3, "0.1.0"),
            f"the state lineage is {OTHER}, the plan was made for lineage {LINEAGE}",
        ),
        (
            plan(LINEAGE, 3),
            State(LINEAGE, 4, "0.1.0"),
            "the state serial is 4, the plan was made at serial 3",
        ),
    ],
    ids=["state-appeared", "state-gone", "other-lineage", "serial-moved"],
)
def test_a_stale_plan_says_what_moved(made: Plan, now: State | None, reason: str) -> None:
    assert stale_reasons(made, now) == (reason,)
    assert "None" not in reason


def test_a_plan_made_against_the_current_state_is_not_stale() -> None:
    assert stale_reasons(plan(LINEAGE, 3), State(LINEAGE, 3, "0.1.0")) == ()
    assert stale_reasons(plan(None, 0), None) == ()
