"""Per-member attributes: which ones a destination sends, in their fixed order."""

from __future__ import annotations

from segops.model import Destination

ATTRIBUTES = ("data_bag", "expiration_ts")


def attributes_of(destination: Destination) -> tuple[str, ...]:
    """Return the per-member attributes a destination sends, in their fixed order."""
    present = (destination.data_bag_column, destination.expiration_ts_column)
    return tuple(a for a, col in zip(ATTRIBUTES, present, strict=True) if col)
