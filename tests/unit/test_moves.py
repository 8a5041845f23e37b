"""Identity and moves in the planner, and the state entries they produce: pure, no engine."""

from __future__ import annotations

import pytest

from segops.errors import PlanError, StateError, UsageError
from segops.model import (
    Action,
    Connection,
    Destination,
    DiffMode,
    DiffResult,
    Identifier,
    IdentifierKind,
    KeyEncoding,
    MemberCounts,
    MovedBlock,
    Platform,
    Settings,
    SnapshotRef,
    Source,
    SourceKind,
)
from segops.planning import planner
from segops.planning.moves import find_moves, selected_moves
from segops.state import edits
from segops.state.model import DestinationState, LastWrite, State, state_from_dict, state_to_dict

FILES_MICS = Connection("files-mics", Platform.FILES, Platform.MEDIARITHMICS)
MICS = Connection("mics", Platform.MEDIARITHMICS, Platform.MEDIARITHMICS)
MOE = Connection("moe", Platform.MOENGAGE, Platform.MOENGAGE)
SOURCE = Source(SourceKind.CSV, "segments/s.yaml", 1, path="data/s.csv")


def mics_settings(connection: str = "files-mics", **refs: str) -> Settings:
    values = {"connection": connection, "datamart_id": "1509", "identifier.kind": "email_hash"}
    values |= refs or {"segment_technical_name": "cart"}
    return tuple(sorted(values.items()))


def moe_settings(name: str = "cart", **extra: str) -> Settings:
    values = {"connection": "moe", "segment.name": name, "attribute.name": "email", **extra}
    return tuple(sorted(values.items()))


def destination(
    address: str, settings: Settings, connection: Connection = FILES_MICS
) -> Destination:
    segment, name = address.split(".")
    kind = IdentifierKind.ATTRIBUTE if connection is MOE else IdentifierKind.EMAIL_HASH
    return Destination(
        segment, name, connection, Identifier(kind, "c"), settings, SOURCE, "segments/s.yaml", 1
    )


def entry(
    address: str, settings: Settings, platform: Platform = Platform.MEDIARITHMICS, **more: object
) -> DestinationState:
    segment = address.split(".")[0]
    snapshot = SnapshotRef("a" * 64, 5, KeyEncoding.TEXT)
    return DestinationState(
        address, segment, dict(settings)["connection"], platform, settings, snapshot, **more
    )  # type: ignore[arg-type]


def test_a_rename_to_the_same_platform_segment_is_a_move() -> None:
    moves = find_moves(
        [destination("abandoned.files-mics", mics_settings())],
        [entry("cart.files-mics", mics_settings())],
    )
    assert [(m.old, m.new, m.explicit) for m in moves] == [
        ("cart.files-mics", "abandoned.files-mics", False)
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (mics_settings(segment_technical_name="cart"), mics_settings(segment_id="77")),
        (mics_settings(), mics_settings(connection="other")),
        (mics_settings(), mics_settings(segment_technical_name="basket")),
    ],
    ids=["another-reference", "another-connection", "another-segment"],
)
def test_another_platform_segment_is_no_move(old: Settings, new: Settings) -> None:
    assert find_moves([destination("b.files-mics", new)], [entry("a.files-mics", old)]) == ()


def test_moengage_segments_match_by_name_or_cs_id() -> None:
    by_id = find_moves(
        [destination("b.moe", moe_settings("renamed", **{"segment.cs_id": "x1"}), MOE)],
        [entry("a.moe", moe_settings("cart", **{"segment.cs_id": "x1"}), Platform.MOENGAGE)],
    )
    assert [(m.old, m.new) for m in by_id] == [("a.moe", "b.moe")]
    by_name = find_moves(
        [destination("b.moe", moe_settings("cart"), MOE)],
        [entry("a.moe", moe_settings("cart"), Platform.MOENGAGE)],
    )
    assert [(m.old, m.new) for m in by_name] == [("a.moe", "b.moe")]


def test_a_moved_block_pairs_addresses_whatever_their_segment() -> None:
    block = MovedBlock("a.files-mics", "b.files-mics", 7)
    want = [destination("b.files-mics", mics_settings(segment_technical_name="basket"))]
    have = [entry("a.files-mics", mics_settings())]
    assert [(m.old, m.new, m.explicit) for m in find_moves(want, have, [block])] == [
        ("a.files-mics", "b.files-mics", True)
    ]
    # Applied already: nothing at `from` any more, the block does nothing.
    assert find_moves(want, [entry("b.files-mics", mics_settings())], [block]) == ()
    with pytest.raises(PlanError, match=r"segops.yaml:7: moved: .* the state holds both"):
        find_moves(want, [*have, entry("b.files-mics", mics_settings())], [block])


def test_selection_plans_a_move_by_its_new_address() -> None:
    moves = find_moves(
        [destination("b.files-mics", mics_settings())], [entry("a.files-mics", mics_settings())]
    )
    assert selected_moves(moves, {"b.files-mics"}, set()) == (moves, frozenset())
    assert selected_moves(moves, set(), {"a.files-mics"}) == ((), frozenset({"a.files-mics"}))


def decide_one(want: Destination, have: DestinationState, **kwargs: object) -> planner.Decision:
    state = State("lineage", 3, "v", (have,))
    moves = find_moves([want], [have])
    (decision,) = planner.decide([want], state, {"files-mics", "mics", "moe"}, moves, **kwargs)  # type: ignore[arg-type]
    return decision


def result(address: str, counts: MemberCounts) -> DiffResult:
    return DiffResult(address, counts, None)


def test_a_pure_move_plans_the_move_action_only() -> None:
    decision = decide_one(
        destination("b.files-mics", mics_settings()), entry("a.files-mics", mics_settings())
    )
    assert decision.moved_from == "a.files-mics" and decision.mode is DiffMode.MERGE
    change = planner._change(decision, result("b.files-mics", MemberCounts(5, 5)))
    assert change.actions == (Action.MOVE,) and change.action is Action.MOVE
    assert change.is_change and change.moved_from == "a.files-mics"
    assert change.base == "a" * 64


def test_a_destroy_sharing_a_segment_with_a_create_is_refused() -> None:
    """The last check: were a move ever missed, the pair would not run remove-after-add."""
    want = destination("b.files-mics", mics_settings())
    have = entry("a.files-mics", mics_settings())
    with pytest.raises(PlanError, match="a.files-mics is destroyed while b.files-mics writes"):
        planner.decide([want], State("l", 1, "v", (have,)), {"files-mics"}, moves=())


def test_replace_resends_by_the_platform_s_mode() -> None:
    mics = decide_one(
        destination("a.files-mics", mics_settings()),
        entry("a.files-mics", mics_settings()),
        replace_addresses={"a.files-mics"},
    )
    assert mics.mode is DiffMode.REFRESH and "replaced as requested" in mics.why
    moe = decide_one(
        destination("a.moe", moe_settings(), MOE),
        entry("a.moe", moe_settings(), Platform.MOENGAGE),
        replace_addresses={"a.moe"},
    )
    assert moe.mode is DiffMode.FULL and moe.request.applied is None
    change = planner._change(moe, result("a.moe", MemberCounts(0, 3, add=3)))
    assert change.full and change.base == "" and change.members.before == 5
    assert change.action is Action.RECREATE


def test_a_files_connection_now_calling_the_api_sends_everything() -> None:
    have = entry("a.mics", mics_settings("mics"), via="files")
    decision = decide_one(destination("a.mics", mics_settings("mics"), MICS), have)
    assert decision.mode is DiffMode.FULL
    assert [(c.path, c.before, c.after, c.effect) for c in decision.setting_changes] == [
        ("connection.platform", "files", "mediarithmics", "recreate")
    ]
    # An entry of an older segops (no `via`) is not taken for a switch.
    older = decide_one(
        destination("a.mics", mics_settings("mics"), MICS), entry("a.mics", mics_settings("mics"))
    )
    assert older.mode is DiffMode.MERGE and older.setting_changes == ()


def test_unconfirmed_members_are_noted() -> None:
    decision = decide_one(
        destination("a.moe", moe_settings(), MOE),
        entry("a.moe", moe_settings(), Platform.MOENGAGE, unconfirmed=True),
    )
    assert any("never confirmed" in n for n in decision.notes)


# -- the state entries: compatible, and edited purely ----------------------------------------


def test_older_entries_keep_their_digest_and_new_fields_round_trip() -> None:
    plain = State("lineage", 2, "v", (entry("a.files-mics", mics_settings()),))
    data = state_to_dict(plain)
    assert set(data["destinations"]["a.files-mics"]) == {
        "segment", "connection", "platform", "settings", "settings_digest", "member_count",
        "snapshot", "digest",
    }  # fmt: skip
    rich = entry(
        "a.files-mics",
        mics_settings(),
        via="files",
        unconfirmed=True,
        last=LastWrite("run-000002", "apply", "2026-01-01T00:00:00+00:00"),
    )
    back = state_from_dict(state_to_dict(State("lineage", 2, "v", (rich,))), "state.json")
    assert back.destinations == (rich,)


def test_state_edits() -> None:
    state = State("l", 4, "v", (entry("a.x", mics_settings()), entry("b.y", mics_settings())))
    forgotten = edits.forget(state, ["a.x"])
    assert [d.address for d in forgotten.destinations] == ["b.y"]
    assert dict(forgotten.resources) == {"forgotten:a.x": "5"}
    with pytest.raises(UsageError, match="c.z is not in the state"):
        edits.forget(state, ["c.z"])
    moved = edits.move(state, "a.x", "c.z", "now")
    assert [(d.address, d.segment) for d in moved.destinations] == [("b.y", "b"), ("c.z", "c")]
    assert moved.get("c.z").last == LastWrite("moved from a.x", "state mv", "now")  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="b.y is already in the state"):
        edits.move(state, "a.x", "b.y", "now")
    adopted = edits.adopt(forgotten, entry("a.x", mics_settings()))
    assert dict(adopted.resources) == {}
    with pytest.raises(StateError):
        edits.adopt(adopted, entry("a.x", mics_settings()))
    with pytest.raises(UsageError, match="not a destination address"):
        edits.check_address("A.b", "TO")
