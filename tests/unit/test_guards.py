"""The guard rules as values: what each one trips on, with no workspace around them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from segops.errors import GuardError, UsageError
from segops.model import (
    Action,
    DestinationChange,
    KeyEncoding,
    MemberCounts,
    Plan,
    Platform,
    Safety,
)
from segops.planning.guards import check_overrides, trips, with_guards


def change(
    before: int,
    after: int,
    remove: int,
    add: int = 0,
    *,
    recreate: bool = False,
    destroy: bool = False,
) -> DestinationChange:
    actions = (Action.RECREATE,) if recreate else (Action.DESTROY,) if destroy else (Action.REMOVE,)
    return DestinationChange(
        address="s.f",
        segment="s",
        connection="f",
        platform=Platform.MEDIARITHMICS,
        actions=actions,
        settings_before=(("connection", "f"),),
        settings_after=None if destroy else (("connection", "f"),),
        setting_changes=(),
        members=MemberCounts(before=before, after=after, add=add, remove=remove),
        delta=None,
        encoding=KeyEncoding.TEXT,
    )


DEFAULT = Safety()


def names(c: DestinationChange, safety: Safety = DEFAULT, has_state: bool = True) -> list[str]:
    return [t.guard for t in trips(c, safety, has_state)]


def test_without_state_a_removal_trips() -> None:
    assert names(change(0, 0, 0, add=5), has_state=False) == []
    assert "no-state-only-adds" in names(change(10, 9, 1), has_state=False)


def test_empty_source_and_its_allowance() -> None:
    assert names(change(10, 0, 10)) == ["empty-source", "max-removal-fraction"]
    allowed = Safety(max_removal_fraction=1.0, allow_empty_source=True)
    assert names(change(10, 0, 10), allowed) == []


def test_fraction_is_strictly_more_than_the_limit() -> None:
    assert names(change(100, 75, 25)) == []
    assert names(change(100, 74, 26)) == ["max-removal-fraction"]


def test_count_limit() -> None:
    assert names(change(1000, 990, 10), Safety(max_removals=9)) == ["max-removals"]


def test_recreate_counts_only_members_that_do_not_come_back() -> None:
    assert names(change(100, 100, 100, add=100, recreate=True)) == []
    assert names(change(100, 50, 100, add=50, recreate=True)) == ["max-removal-fraction"]


def test_destroy_is_not_an_empty_source() -> None:
    assert names(change(10, 0, 10, destroy=True)) == ["max-removal-fraction"]


def created(after: int, skipped: int = 0) -> DestinationChange:
    return replace(
        change(0, after, 0, add=after),
        actions=(Action.CREATE,),
        settings_before=None,
        members=MemberCounts(before=0, after=after, add=after, skipped=skipped),
    )


@pytest.mark.parametrize("has_state", [True, False])
def test_creating_an_empty_destination_trips_unless_allowed(has_state: bool) -> None:
    assert names(created(0), has_state=has_state) == ["empty-source"]
    assert names(created(0), Safety(allow_empty_source=True), has_state) == []
    assert names(created(1), has_state=has_state) == []


def test_an_all_skipped_source_says_so() -> None:
    (trip,) = trips(created(0, skipped=12), DEFAULT, True)
    assert "12 bad rows were skipped" in trip.message and "created with no members" in trip.message


def test_an_empty_destination_that_exists_already_is_not_created_again() -> None:
    unchanged = replace(change(0, 0, 0), actions=(Action.NO_OP,))
    assert names(unchanged) == []


# -- overrides, and a plan diffed again on data that moved since review -----------------------


def guarded(*changes: DestinationChange) -> Plan:
    plan = Plan("0.1.0", "lin", 1, (), (), changes)
    return with_guards(plan, {}, DEFAULT)


DIGEST = "ab" * 32


def test_an_override_names_a_segment_tripped_in_the_plan() -> None:
    tripped = guarded(change(20, 10, 10))
    check_overrides(tripped, ["s"], DIGEST)
    check_overrides(tripped, [f"s@{DIGEST[:8]}"], DIGEST)
    with pytest.raises(GuardError, match="--allow-removals s"):
        check_overrides(tripped, [], DIGEST)
    with pytest.raises(UsageError, match="no safety guard stops other"):
        check_overrides(tripped, ["other"], DIGEST)
    with pytest.raises(UsageError, match="that digest is not this plan's"):
        check_overrides(tripped, ["s@cdcdcdcd"], DIGEST)
    with pytest.raises(UsageError, match="needs a saved plan"):
        check_overrides(tripped, ["s"], None)


def test_after_a_data_refresh_an_override_covers_up_to_the_reviewed_removals() -> None:
    reviewed = guarded(change(20, 10, 10))
    check_overrides(guarded(change(20, 12, 8)), ["s"], DIGEST, reviewed)
    check_overrides(guarded(change(20, 10, 10)), ["s"], DIGEST, reviewed)
    with pytest.raises(
        GuardError, match="the current data removes 11 members, the reviewed plan 10"
    ):
        check_overrides(guarded(change(20, 9, 11)), ["s"], DIGEST, reviewed)
    with pytest.raises(GuardError, match="--allow-removals s"):  # still needs the override
        check_overrides(guarded(change(20, 12, 8)), [], DIGEST, reviewed)


def test_after_a_data_refresh_a_new_trip_is_not_covered_by_a_review_that_removed_less() -> None:
    reviewed = guarded(change(20, 19, 1))  # reviewed: no guard trips
    assert not reviewed.tripped
    with pytest.raises(GuardError, match="covers only the removals that were reviewed"):
        check_overrides(guarded(change(20, 5, 15)), ["s"], DIGEST, reviewed)


def test_an_override_of_a_guard_the_refreshed_data_no_longer_trips_is_accepted() -> None:
    reviewed = guarded(change(20, 10, 10))
    check_overrides(guarded(change(20, 20, 0)), ["s"], DIGEST, reviewed)
    with pytest.raises(UsageError, match="no safety guard stops s"):  # without a data refresh
        check_overrides(guarded(change(20, 20, 0)), ["s"], DIGEST)
