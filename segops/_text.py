"""Words for people: counts with the right plural."""

from __future__ import annotations


def plural(count: int, singular: str, many: str | None = None) -> str:
    """Return `count` and its noun: "1 file", "2 files", "1,200 batches" (with `many`)."""
    noun = singular if count == 1 else (many or f"{singular}s")
    return f"{count:,} {noun}"
