"""The installed segops version, read once from the package metadata."""

from __future__ import annotations

from functools import cache


@cache
def version() -> str:
    """Return segops' version; "0.0.0+unknown" for a source tree never installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("segops")
    except PackageNotFoundError:
        return "0.0.0+unknown"
