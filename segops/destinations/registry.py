"""Which platforms exist: the built-in ones, and those installed packages register.

A platform is a `PlatformSpec` (see platform.py). The built-in ones are listed below, one
line each, as import paths, so a command only imports the platforms it uses. A separately
installed package adds one through the `segops.destinations` entry point group, as a
Terraform provider adds itself; in its pyproject.toml:

    [project.entry-points."segops.destinations"]
    acme = "segops_acme:PLATFORM"

The entry point's name is the platform's name in segops.yaml (`platform: acme`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points

from segops.destinations.platform import PlatformSpec
from segops.errors import SegopsError

ENTRY_POINT_GROUP = "segops.destinations"

# name -> "module:attribute" of its PlatformSpec instance
BUILTIN: Mapping[str, str] = {
    "mediarithmics": "segops.destinations.mediarithmics:PLATFORM",
    "moengage": "segops.destinations.moengage:PLATFORM",
    "files": "segops.destinations.files:PLATFORM",
}


class PlatformLoadError(SegopsError):
    """An installed platform package cannot be loaded."""


@cache
def platform_names() -> tuple[str, ...]:
    """Return every platform's name, built-in first, then installed ones, sorted."""
    return (*BUILTIN, *sorted(set(_installed()) - set(BUILTIN)))


def platform_spec(name: str) -> PlatformSpec | None:
    """Return the platform called `name`, or None when no platform has that name."""
    if name in BUILTIN:
        return _load(name, BUILTIN[name])
    target = _installed().get(name)
    return _load(name, target) if target is not None else None


def all_platforms() -> dict[str, PlatformSpec]:
    """Return every platform by name (this imports each platform's spec module)."""
    found = {name: platform_spec(name) for name in platform_names()}
    return {name: spec for name, spec in found.items() if spec is not None}


def plugin_platforms() -> dict[str, PlatformSpec]:
    """Return the platforms that installed packages register, by name."""
    return {n: s for n, s in all_platforms().items() if n not in BUILTIN}


@cache
def _installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in BUILTIN:
            raise PlatformLoadError(
                f"the package providing entry point {point.value!r} registers platform "
                f"{point.name!r}, which is built into segops; uninstall it or rename its "
                "entry point"
            )
        found[point.name] = point.value
    return found


@cache
def _load(name: str, target: str) -> PlatformSpec:
    module_name, _, attribute = target.partition(":")
    try:
        value = getattr(importlib.import_module(module_name), attribute or "PLATFORM")
    except (ImportError, AttributeError) as exc:
        raise PlatformLoadError(
            f"platform {name!r} ({ENTRY_POINT_GROUP} entry point {target!r}) cannot be "
            f"loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(value, PlatformSpec):
        raise PlatformLoadError(
            f"platform {name!r}: {target} is not a segops PlatformSpec instance"
        )
    if value.name != name:
        raise PlatformLoadError(
            f"platform {name!r}: {target} calls itself {value.name!r}; the entry point's name "
            "and the spec's `name` must be the same"
        )
    return value
