"""The plan file: a zip holding plan.json and the delta files it names.

Entries are stored (Parquet is compressed already) with a fixed timestamp, in sorted
order, so the same plan gives the same bytes. The file is written 0600 under a temporary
name next to its target, fsynced, then renamed: a kill never leaves a partial plan under
the target's name.

A plan file is untrusted input (in CI, anyone who can push a branch controls the artifact),
so reading one is strict, and nothing in it ever names a path:

- its entries are exactly plan.json, its signature when signed, and one
  `deltas/<sha256>.parquet` per delta plan.json names: no other name, no duplicate;
- every entry is stored, never compressed, with sizes that agree, and together they are
  no larger than the file: nothing expands (no zip bomb);
- plan.json is UTF-8 JSON of at most 64 MiB, valid against schemas/plan.schema.json;
- every delta's bytes match the digest plan.json gives, and deltas are only ever written,
  as new 0600 files named by that digest, into a folder made private here.

With SEGOPS_PLAN_KEY set, plans are signed: an HMAC-SHA256 of plan.json (whose delta
digests bind the rest) under that key. What a plan says is still only a claim: apply
recomputes it from the workspace and the state and refuses any difference
(segops.operations.verify_saved_plan).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError  # type: ignore[import-untyped]

from segops._fs import PRIVATE_FILE, atomic_open, open_private, private_dir, remove_stale_temps
from segops.errors import PlanError, UsageError
from segops.model import Plan
from segops.planning.planzip import (
    CHUNK,
    DELTA_ENTRY,
    PLAN_ENTRY,
    SIGNATURE_ENTRY,
    entries,
    open_regular,
    read_entry,
    stream,
    zip_entry,
)
from segops.render.json import check_format_version, plan_from_dict, render_json, summary

PLAN_KEY_ENV = "SEGOPS_PLAN_KEY"
MIN_KEY_LENGTH = 32
_SIGNATURE = re.compile(rb"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """A plan read from a plan file, with what was checked about the file itself."""

    plan: Plan
    sha256: str  # of the whole file: what `--allow-removals SEGMENT@DIGEST` names
    signed: bool


def plan_key(env: Mapping[str, str]) -> bytes | None:
    """Return the plan signing key from the environment, or None when it is not set.

    Raises:
        UsageError: the variable is set but empty or shorter than MIN_KEY_LENGTH.
    """
    value = env.get(PLAN_KEY_ENV)
    if value is None:
        return None
    if len(value) < MIN_KEY_LENGTH:
        state = "empty (a missing CI secret?)" if not value else f"shorter than {MIN_KEY_LENGTH}"
        raise UsageError(
            f"{PLAN_KEY_ENV} is set but {state}: give it at least {MIN_KEY_LENGTH} random "
            "characters (e.g. `openssl rand -hex 32`), or unset it to work without signed plans"
        )
    return value.encode()


def save_plan(plan: Plan, deltas: Path, path: Path, key: bytes | None = None) -> None:
    """Write `plan` and its delta files (found in `deltas`) to `path`, atomically, mode 0600.

    With `key`, the plan is signed.
    """
    body = render_json(plan).encode()
    names = sorted({c.delta.name for c in plan.changes if c.delta is not None})
    remove_stale_temps(path.parent, of=path.name)
    try:
        with atomic_open(path, PRIVATE_FILE) as handle, zipfile.ZipFile(handle, "w") as archive:
            archive.writestr(zip_entry(PLAN_ENTRY), body)
            if key is not None:
                archive.writestr(zip_entry(SIGNATURE_ENTRY), _sign(key, body))
            for name in names:
                with (
                    (deltas / name).open("rb") as src,
                    archive.open(zip_entry(f"deltas/{name}"), "w") as dst,
                ):
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
    except OSError as exc:
        raise PlanError(f"cannot write the plan to {path}: {exc.strerror or exc}") from None


def read_plan(path: Path, key: bytes | None = None) -> SavedPlan:
    """Return the plan in a plan file, every entry checked, without extracting anything.

    With `key`, a plan without a valid signature is refused.
    """
    return _read(path, key, None)


def open_plan(path: Path, deltas: Path, key: bytes | None = None) -> SavedPlan:
    """Return the plan in `path` and extract its verified delta files into `deltas`.

    `deltas` is created private (0700); a file already in it is never overwritten.
    """
    private_dir(deltas)
    return _read(path, key, deltas)


def _read(path: Path, key: bytes | None, extract: Path | None) -> SavedPlan:
    try:
        with open_regular(path) as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            size = handle.tell()
            handle.seek(0)
            with zipfile.ZipFile(handle) as archive:
                found = entries(archive, path, size)
                body = read_entry(archive, found[PLAN_ENTRY], path)
                signed = SIGNATURE_ENTRY in found
                if key is not None:
                    _check_signature(archive, found.get(SIGNATURE_ENTRY), key, body, path)
                plan = _parse(body, path)
                _extract_deltas(archive, found, plan, path, extract)
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise PlanError(f"{path}: not a segops plan file, or a damaged one ({exc})") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan file: {exc.strerror or exc}") from None
    return SavedPlan(plan, digest, signed)


def _sign(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"segops plan v1\n" + body, hashlib.sha256).hexdigest().encode()


def _check_signature(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo | None, key: bytes, body: bytes, path: Path
) -> None:
    if info is None:
        raise PlanError(
            f"{path}: the plan is not signed, and {PLAN_KEY_ENV} is set: only plans made with "
            f"the same {PLAN_KEY_ENV} are applied; run `segops plan -out FILE` with it"
        )
    given = read_entry(archive, info, path) if info.file_size <= 64 else b""
    if not _SIGNATURE.fullmatch(given) or not hmac.compare_digest(given, _sign(key, body)):
        raise PlanError(
            f"{path}: the plan's signature does not match {PLAN_KEY_ENV}: it was changed after "
            "it was made, or made with another key; make the plan again"
        )


def _parse(body: bytes, path: Path) -> Plan:
    try:
        data = json.loads(
            body.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant
        )
    except UnicodeDecodeError:
        raise PlanError(f"{path}: {PLAN_ENTRY} is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise PlanError(f"{path}: {PLAN_ENTRY} is not valid JSON ({exc})") from None
    check_format_version(data, str(path))  # before the schema, which is one version's
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.path)))
    if errors:
        listed = "\n".join(f"  - {_where(e)}: {e.message[:160]}" for e in errors[:5])
        more = f"\n  ({len(errors) - 5} more)" if len(errors) > 5 else ""
        raise PlanError(
            f"{path}: {PLAN_ENTRY} does not match schemas/plan.schema.json:\n{listed}{more}"
        )
    _check_names(data, path)
    plan = plan_from_dict(data, str(path))
    _check_derived(data, plan, path)
    return plan


def _check_derived(data: Mapping[str, Any], plan: Plan, path: Path) -> None:
    """Refuse derived fields that disagree with what they are derived from (shown to people)."""
    for raw, change in zip(data["changes"], plan.changes, strict=True):
        if raw["action"] != change.action.value:
            raise PlanError(
                f"{path}: {change.address}: action is {raw['action']!r}, but its actions make it "
                f"{change.action.value!r}"
            )
    if data["summary"] != summary(plan):
        raise PlanError(f"{path}: {PLAN_ENTRY}: the summary does not add up to the changes")


def _check_names(data: Mapping[str, Any], path: Path) -> None:
    """Refuse what the schema cannot say: unique addresses, deltas named by their digest."""
    addresses = [c["address"] for c in data["changes"]]
    if len(set(addresses)) != len(addresses):
        raise PlanError(f"{path}: {PLAN_ENTRY} lists a destination address twice")
    for change in data["changes"]:
        delta = change["delta"]
        # The schema's `$` would let a trailing newline through: match whole values here.
        if delta is not None and (
            not DELTA_ENTRY.fullmatch(f"deltas/{delta['sha256']}.parquet")
            or delta["file"] != f"{delta['sha256']}.parquet"
        ):
            raise PlanError(f"{path}: {change['address']}: delta.file must be <sha256>.parquet")


def _extract_deltas(
    archive: zipfile.ZipFile,
    found: Mapping[str, zipfile.ZipInfo],
    plan: Plan,
    path: Path,
    extract: Path | None,
) -> None:
    """Check every delta entry against its digest; write them into `extract` when given."""
    named = {c.delta.sha256: c.address for c in plan.changes if c.delta is not None}
    present = {m.group(1) for n in found if (m := DELTA_ENTRY.fullmatch(n))}
    for extra in sorted(present - named.keys()):
        raise PlanError(f"{path}: entry deltas/{extra}.parquet is named by no change")
    for sha256, address in sorted(named.items()):
        info = found.get(f"deltas/{sha256}.parquet")
        if info is None:
            raise PlanError(f"{path}: delta of {address} is missing")
        target = None if extract is None else extract / f"{sha256}.parquet"
        if target is None:
            actual = stream(archive, info, path, lambda _: None)
        else:
            with open_private(target) as out:
                actual = stream(archive, info, path, out.write)
        if actual != sha256:
            if target is not None:
                target.unlink()
            raise PlanError(f"{path}: delta of {address} does not match its digest")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key appears twice in one object: {sorted(keys)[:5]}")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _where(error: ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


@cache
def _validator() -> Draft202012Validator:
    text = (files("segops") / "schemas" / "plan.schema.json").read_text(encoding="utf-8")
    return Draft202012Validator(json.loads(text))
