"""Reading a plan's selection back, and naming every difference between two plans."""

from __future__ import annotations

from dataclasses import replace

import pytest

from segops.errors import PlanError
from segops.model import (
    Action,
    DataPin,
    DeltaFile,
    DestinationChange,
    GuardTrip,
    InputFile,
    KeyEncoding,
    MemberCounts,
    Plan,
    Platform,
)
from segops.planning.verify import (
    SavedSelection,
    data_changes,
    definition_changes,
    expected_segments,
    parse_selection,
    plan_differences,
    refresh_lines,
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
    return Plan("0.1.0", "lin", 3, (), (), changes)


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


# -- definitions are reviewed, data refreshes ------------------------------------------------


def test_definition_changes_name_every_added_removed_or_changed_file() -> None:
    saved = (InputFile("a.yaml", "1" * 64), InputFile("b.yaml", "2" * 64), InputFile("c", "3"))
    now = (InputFile("a.yaml", "1" * 64), InputFile("b.yaml", "9" * 64), InputFile("d", "4"))
    assert definition_changes(saved, now) == [
        "b.yaml changed",
        "c was removed",
        "d was added",
    ]
    assert definition_changes(saved, saved) == []
    assert definition_changes((InputFile("x\ny", "1"),), ()) == ['"x\\ny" was removed']


def pinned(*pins: DataPin, changes: tuple[DestinationChange, ...] = ()) -> Plan:
    return replace(plan(*(changes or (change("a.x"), change("b.x")))), data=pins)


def test_data_changes_are_found_per_segment_of_the_plan() -> None:
    saved = pinned(DataPin("a", "a.csv", "sha256:1"), DataPin("b", "b.csv", "sha256:2"))
    same = pinned(DataPin("a", "a.csv", "sha256:1"), DataPin("b", "b.csv", "sha256:2"))
    assert data_changes(saved, same) == {}
    moved = pinned(DataPin("a", "a.csv", "sha256:1"), DataPin("b", "b.csv", "sha256:3"))
    assert data_changes(saved, moved) == {"b": ["b.csv"]}
    renamed = pinned(DataPin("a", "a2.csv", "sha256:1"), DataPin("b", "b.csv", "sha256:2"))
    assert data_changes(saved, renamed) == {"a": ["a.csv", "a2.csv"]}
    # a pin for a segment the recomputed plan does not hold is nobody's data
    extra = replace(saved, data=(*saved.data, DataPin("zzz", "z.csv", "sha256:0")))
    assert data_changes(extra, same) == {}


def test_a_moved_segment_compares_only_what_definitions_and_state_decide() -> None:
    reviewed = change(actions=(Action.ADD,), members=MemberCounts(before=4, after=5, add=1))
    now = change(
        actions=(Action.ADD, Action.REMOVE),
        members=MemberCounts(before=4, after=3, add=1, remove=2, skipped=1),
        delta=DeltaFile("e" * 64, 3),
        operations=2,
        guards=(GuardTrip("max-removal-fraction", "m"),),
    )
    assert plan_differences(plan(reviewed), plan(now), {"s"}) == []
    strict = " ".join(plan_differences(plan(reviewed), plan(now)))  # when the data did not move
    for key in ("actions", "members.after", "members.remove", "delta", "operations", "guards"):
        assert f"s.x: {key}" in strict
    for theirs, named in [
        (replace(reviewed, settings_after=(("a", 2),)), "settings.after.a"),
        (replace(reviewed, members=MemberCounts(before=9, after=5, add=1)), "members.before"),
        (replace(reviewed, base="f" * 64), "base_snapshot"),
        (replace(reviewed, actions=(Action.RECREATE,)), "actions"),
        (replace(reviewed, attributes=("data_bag",)), "attributes"),
    ]:
        (found,) = plan_differences(plan(theirs), plan(now), {"s"})
        assert named in found


def test_refresh_lines_put_the_new_counts_beside_the_reviewed_ones() -> None:
    reviewed = plan(
        change("a.x", members=MemberCounts(before=4, after=104, add=100)), change("b.x")
    )
    now = plan(
        change("a.x", members=MemberCounts(before=4, after=121, add=120, remove=3, update=1)),
        change("b.x"),
    )
    assert refresh_lines(reviewed, now, {"a"}) == [
        "a.x: data changed since review: +120 ~1 -3 (reviewed +100 ~0 -0)"
    ]
    assert refresh_lines(reviewed, now, ()) == []
