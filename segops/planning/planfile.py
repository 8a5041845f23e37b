"""The plan file: a zip holding plan.json and the delta files it names.

Entries are stored (Parquet is compressed already) with a fixed timestamp, in sorted
order, so the same plan gives the same bytes. On open, every delta is checked against
the digest recorded in the plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

from segops.errors import PlanError
from segops.model import Plan
from segops.render.json import plan_from_dict, render_json

_PLAN_ENTRY = "plan.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_plan(plan: Plan, deltas: Path, path: Path) -> None:
    """Write `plan` and its delta files (found in `deltas`) to `path`, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_entry(_PLAN_ENTRY), render_json(plan))
        names = sorted({c.delta.name for c in plan.changes if c.delta is not None})
        for name in names:
            with (
                (deltas / name).open("rb") as src,
                archive.open(_entry(f"deltas/{name}"), "w") as dst,
            ):
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    os.replace(tmp, path)


def read_plan(path: Path) -> Plan:
    """Return the plan stored in a plan file, without extracting its deltas."""
    with _open(path) as archive:
        return _parse(archive, path)


def open_plan(path: Path, deltas: Path) -> Plan:
    """Return the plan in `path` and extract its delta files into `deltas`, verified."""
    with _open(path) as archive:
        plan = _parse(archive, path)
        deltas.mkdir(parents=True, exist_ok=True)
        for change in plan.changes:
            if change.delta is None:
                continue
            target = deltas / change.delta.name
            digest = hashlib.sha256()
            try:
                with archive.open(f"deltas/{change.delta.name}") as src, target.open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
            except KeyError:
                raise PlanError(f"{path}: delta of {change.address} is missing") from None
            if digest.hexdigest() != change.delta.sha256:
                raise PlanError(f"{path}: delta of {change.address} does not match its digest")
    return plan


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _open(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise PlanError(f"{path}: not a segops plan file ({exc})") from None


def _parse(archive: zipfile.ZipFile, path: Path) -> Plan:
    try:
        data = json.loads(archive.read(_PLAN_ENTRY))
    except KeyError:
        raise PlanError(f"{path}: not a segops plan file (no {_PLAN_ENTRY})") from None
    except ValueError as exc:
        raise PlanError(f"{path}: {_PLAN_ENTRY} is not valid JSON ({exc})") from None
    return plan_from_dict(data, str(path))
