"""Edits of the state outside apply: `segops state rm`, `state mv` and `import`. Pure.

Each returns a new State; the caller holds the lock and writes it (the store keeps the
backup). None of them calls a platform: `rm` forgets (the members stay where they are),
`mv` re-keys, `import` records what a platform segment already holds as applied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from segops.errors import StateError, UsageError
from segops.state.model import DestinationState, LastWrite, State

ADDRESS = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}\.[a-z0-9][a-z0-9_-]{0,127}")
# A resource that remembers a destination `state rm` forgot, for the plan's import hint.
FORGOTTEN = "forgotten:"


def forgotten_key(address: str) -> str:
    return f"{FORGOTTEN}{address}"


def check_address(address: str, option: str) -> str:
    """Return `address` if it is SEGMENT.NAME; raise UsageError naming `option` otherwise."""
    if not ADDRESS.fullmatch(address):
        raise UsageError(
            f"{option} {address[:130]!r}: not a destination address SEGMENT.NAME "
            "(lowercase letters, digits, '_' or '-'), e.g. cart_abandoners_7d.mics-prod"
        )
    return address


def entry_of(state: State | None, address: str) -> DestinationState:
    """Return the entry at `address`; raise UsageError listing what the state holds."""
    entry = state.get(address) if state else None
    if entry is None:
        held = [d.address for d in state.destinations] if state else []
        shown = ", ".join(held[:10]) + (", …" if len(held) > 10 else "")
        raise UsageError(
            f"{address} is not in the state (it holds: {shown or 'nothing'}); "
            "`segops state list` lists every address"
        )
    return entry


def forget(state: State | None, addresses: Sequence[str]) -> State:
    """Return `state` without the entries at `addresses`, remembering that they were forgotten.

    Raises:
        UsageError: an address that is not in the state.
    """
    for address in addresses:
        entry_of(state, address)
    assert state is not None
    resources = dict(state.resources)
    for address in addresses:
        entry = entry_of(state, address)
        resources[forgotten_key(address)] = str(entry.member_count)
        state = state.without(address)
    return replace(state, resources=tuple(sorted(resources.items())))


def move(state: State | None, old: str, new: str, at: str) -> State:
    """Return `state` with the entry at `old` moved to `new` (its segment follows the address).

    Raises:
        UsageError: `old` is not in the state, or `new` is already there.
    """
    entry = entry_of(state, old)
    assert state is not None
    if state.get(new) is not None:
        raise UsageError(
            f"{new} is already in the state: forget it first (`segops state rm {new}`), or "
            "choose another address"
        )
    moved = replace(
        entry,
        address=new,
        segment=new.split(".", 1)[0],
        last=LastWrite(f"moved from {old}", "state mv", at),
    )
    return state.without(old).with_destination(moved)


def adopt(state: State, entry: DestinationState) -> State:
    """Return `state` with an imported `entry` (its forgotten marker dropped).

    Raises:
        StateError: the address is already in the state.
    """
    if state.get(entry.address) is not None:
        raise StateError(f"{entry.address} is already in the state")
    resources = {k: v for k, v in state.resources if k != forgotten_key(entry.address)}
    adopted = state.with_destination(entry)
    return replace(adopted, resources=tuple(sorted(resources.items())))
