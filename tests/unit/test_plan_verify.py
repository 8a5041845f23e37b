"""Reading a plan's selection back, and naming every difference between two plans."""

from __future__ import annotations

from dataclasses import replace

import pytest

from segops.errors import PlanError
from segops.model import (
    Action,
    DestinationChange,
    GuardTrip,
    KeyEncoding,
    MemberCounts,
    Plan,
    Platform,
)
from segops.planning.verify import (
    SavedSelection,
    expected_segments,
    parse_selection,
    plan_differences,
    segment_differences,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SavedSelection()),
        ("--segment c*", SavedSelection(("c*",))),
        ("--segment a --segment b", SavedSelection(("a", "b"))),
        ("--exclude x?", SavedSelection((), ("x?",))),
        (
            "--segment a --exclude b --changed-since origin/main",
            SavedSelection(("a",), ("b",), "origin/main"),
        ),
    ],
)
def test_selection_text_reads_back(text: str, expected: SavedSelection) -> None:
    assert parse_selection(text, "p.segplan") == expected


@pytest.mark.parametrize(
    "text",
    ["junk", "junk --segment a", "--changed-since a --changed-since b", "--segmentx a"],
)
def test_selection_text_segops_never_writes_is_refused(text: str) -> None:
    with pytest.raises(PlanError, match="p.segplan: selection"):
        parse_selection(text, "p.segplan")


def test_expected_segments_follow_the_globs_and_leave_git_to_the_plan() -> None:
    known = {"cart", "churn", "vip"}
    assert expected_segments(SavedSelection(), known) == known
    assert expected_segments(SavedSelection(("c*",), ("churn",)), known) == {"cart"}
    assert expected_segments(SavedSelection((), (), "HEAD"), known) is None


def change(address: str = "s.x", **fields: object) -> DestinationChange:
    base = DestinationChange(
        address=address,
        segment=address.split(".")[0],
        connection="c",
        platform=Platform.MEDIARITHMICS,
        actions=(Action.ADD,),
        settings_before=(("a", 1),),
        settings_after=(("a", 1),),
        setting_changes=(),
        members=MemberCounts(before=4, after=5, add=1),
        delta=None,
        encoding=KeyEncoding.HEX,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def plan(*changes: DestinationChange) -> Plan:
    return Plan("0.1.0", "lin", 3, (), changes)


@pytest.mark.parametrize(
    ("theirs", "named"),
    [
        (change(settings_after=(("a", 1), ("b", None))), "settings.after.b: the plan says null"),
        (change(settings_after=(("a", "1"),)), 'settings.after.a: the plan says "1"'),
        (change(settings_after=(("a", True),)), "settings.after.a: the plan says true"),
        (change(members=MemberCounts(before=4, after=5, add=1, skipped=2)), "members.skipped"),
        (change(guards=(GuardTrip("max-removals", "m"),)), 'the plan says ["max-removals"]'),
        (change(eta="now", base="f" * 64), "base_snapshot"),
    ],
    ids=["null-vs-missing", "text-vs-number", "bool-vs-number", "skipped", "guards", "base"],
)
def test_every_difference_is_named(theirs: DestinationChange, named: str) -> None:
    found = plan_differences(plan(theirs), plan(change()))
    assert len(found) == 1 and named in found[0]


def test_eta_depends_on_the_clock_and_is_not_compared() -> None:
    assert plan_differences(plan(change(eta="in 2 hours")), plan(change(eta="now"))) == []


def test_missing_and_extra_destinations_and_segments_are_named() -> None:
    found = plan_differences(plan(change("a.x")), plan(change("b.x")))
    assert found == [
        "a.x: in the plan, but not a destination of the manifests or state",
        "b.x: the plan leaves it out",
    ]
    assert segment_differences(plan(change("a.x")), frozenset({"b"})) == [
        "segment b: the plan leaves it out",
        "segment a: the plan's selection does not pick it",
    ]
    assert segment_differences(plan(change("a.x")), None) == []
