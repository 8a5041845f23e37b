"""The guard rules as values: what each one trips on, with no workspace around them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from segops.model import (
    Action,
    DestinationChange,
    KeyEncoding,
    MemberCounts,
    Platform,
    Safety,
)
from segops.planning.guards import trips


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
