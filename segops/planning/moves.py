"""Identity and moves: a destination is where its members live, not its address. Pure.

A destination's identity is its connection and the platform segment it writes to (the
keys of `PlatformSpec.segment_keys`: a mediarithmics datamart and segment id or technical
name, a MoEngage segment name or cs_id). When an address leaves the manifests and another
appears with the same identity, that is a rename: the applied entry *moves* to the new
address (the state is re-keyed, and only the member difference is sent), instead of a
destroy of one address and a create of the other, which, run one after the other,
could empty the very segment both name. A `moved: {from, to}` block in segops.yaml says
the same for a rename that also changes the platform reference on purpose: then the
moved entry is compared with the new settings as usual (a new segment reference
recreates).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from segops.destinations.registry import platform_spec
from segops.errors import PlanError
from segops.model import Destination, MovedBlock, Platform, Settings
from segops.state.model import DestinationState

Identity = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Move:
    old: str  # the address in the state
    new: str  # the address in the manifests
    explicit: bool  # from a `moved` block; else found by identity


def identities(platform: Platform, settings: Settings) -> list[Identity]:
    """Return the keys that name the platform segment of a destination with `settings`."""
    spec = platform_spec(platform)
    values = dict(settings)
    if spec is None:
        return [(str(platform), *(f"{k}={v}" for k, v in settings))]
    return spec.segment_keys(values)


def find_moves(
    desired: Sequence[Destination],
    applied: Sequence[DestinationState],
    blocks: Sequence[MovedBlock] = (),
) -> tuple[Move, ...]:
    """Return the moves between state entries that left the manifests and new addresses.

    `desired` and `applied` are whole (every segment): a rename must be seen even when a
    selection plans only one of its two ends.

    Raises:
        PlanError: a `moved` block whose two addresses are both in the state.
    """
    wanted = {d.address: d for d in desired}
    have = {e.address: e for e in applied}
    moves: list[Move] = []
    taken_old: set[str] = set()
    taken_new: set[str] = set()
    for block in blocks:
        if block.old not in have or block.new not in wanted:
            continue  # applied already (or nothing to move): the block may stay in segops.yaml
        if block.new in have:
            raise PlanError(
                f"segops.yaml:{block.line}: moved: from {block.old} to {block.new}: the state "
                f"holds both addresses; forget one first (`segops state rm ADDRESS`), or "
                "drop the block"
            )
        moves.append(Move(block.old, block.new, True))
        taken_old.add(block.old)
        taken_new.add(block.new)
    gone = [e for a, e in sorted(have.items()) if a not in wanted and a not in taken_old]
    new = [d for a, d in sorted(wanted.items()) if a not in have and a not in taken_new]
    by_identity: dict[Identity, str] = {}
    for destination in new:
        for key in identities(destination.platform, destination.settings):
            by_identity.setdefault(key, destination.address)
    for entry in gone:
        for key in identities(entry.platform, entry.settings):
            target = by_identity.get(key)
            if target is not None and target not in taken_new:
                moves.append(Move(entry.address, target, False))
                taken_new.add(target)
                break
    return tuple(sorted(moves, key=lambda m: m.new))


def selected_moves(
    moves: Sequence[Move], selected_new: Collection[str], selected_old: Collection[str]
) -> tuple[tuple[Move, ...], frozenset[str]]:
    """Return the moves a selection plans, and the state entries it must leave alone.

    A move is planned when its new address is selected (its old entry comes along, whatever
    its segment). When only its old address is selected, the old entry is left out of the
    plan: destroying it would empty the platform segment its new address still wants.
    """
    planned = tuple(m for m in moves if m.new in selected_new)
    held = frozenset(m.old for m in moves if m.new not in selected_new and m.old in selected_old)
    return planned, held


def shared_identity_problems(
    going: Mapping[str, DestinationState], coming: Mapping[str, Destination]
) -> list[str]:
    """Return each destroyed address that shares its platform segment with a created one.

    A plan never holds such a pair (`find_moves` pairs them); this is the last check that
    members are never removed from a segment another change of the plan fills.
    """
    names: dict[Identity, str] = {}
    for address, destination in coming.items():
        for key in identities(destination.platform, destination.settings):
            names.setdefault(key, address)
    found = []
    for address, entry in sorted(going.items()):
        for key in identities(entry.platform, entry.settings):
            if key in names:
                found.append(f"{address} is destroyed while {names[key]} writes the same segment")
                break
    return found
