"""Plan files are untrusted input: crafted archives, edited plans and signatures.

Every refused plan must exit 1 with a message naming the problem, and change nothing: no
state write, no output file, no file written outside the command's scratch folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from segops.planning import planzip
from segops.render.json import plan_from_dict, summary
from tests.conftest import mics_manifest, run, write_tree

KEY = "k" * 40


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = [h(f"user{i}@example.com") for i in range(20)]


def members(root: Path, name: str, hashes: list[str]) -> None:
    write_tree(root, {f"data/{name}.csv": "email_hash\n" + "".join(f"{x}\n" for x in hashes)})


@pytest.fixture
def applied(workspace: Path) -> Path:
    """Two segments of 20 members, applied; then cart loses 3 and gains 1, vip gains 1."""
    for name in ("cart", "vip"):
        write_tree(workspace, {f"segments/{name}.yaml": mics_manifest(name, _csv(name))})
        members(workspace, name, HASHES)
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    members(workspace, "cart", [*HASHES[3:], h("new@example.com")])
    members(workspace, "vip", [*HASHES, h("new@example.com")])
    return workspace


def _csv(name: str) -> str:
    return f"csv: {{path: ../data/{name}.csv}}"


@pytest.fixture
def saved(applied: Path, tmp_path: Path) -> Path:
    path = tmp_path / "p.segplan"
    code, _, err = run(applied, "plan", "-out", str(path))
    assert code == 0, err
    return path


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rewrite(
    src: Path,
    dst: Path,
    edit: Callable[[dict[str, Any]], None] | None = None,
    extra: Mapping[str, bytes | None] | None = None,
    compression: int = zipfile.ZIP_STORED,
    consistent: bool = True,
) -> Path:
    """Copy a plan file with plan.json edited and entries added (or removed: None).

    `consistent`: derive the summary and headline actions again, as a careful forger would.
    """
    found = entries(src)
    data = json.loads(found["plan.json"])
    if edit is not None:
        edit(data)
    if consistent:
        with contextlib.suppress(Exception):  # an edit the reader refuses anyway
            plan = plan_from_dict(data, "forged")
            data["summary"] = summary(plan)
    found["plan.json"] = json.dumps(data, indent=2).encode()
    for name, content in (extra or {}).items():
        if content is None:
            found.pop(name)
        else:
            found[name] = content
    with zipfile.ZipFile(dst, "w", compression=compression) as archive:
        for name, content in found.items():
            archive.writestr(name, content)
    return dst


def fingerprint(root: Path) -> dict[str, bytes]:
    """Every file under `root` (state, outputs) with its bytes, to prove nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def refused(root: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    before = fingerprint(root)
    code, _, err = run_env(root, env, *args)
    assert code == 1, err
    assert "Traceback" not in err
    assert fingerprint(root) == before
    return err


def run_env(root: Path, env: Mapping[str, str] | None, *args: str) -> tuple[int, str, str]:
    if env is None:
        return run(root, *args)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run(root, *args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def first_delta(data: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in data["changes"] if c["delta"] is not None)


def cart(data: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in data["changes"] if c["segment"] == "cart")


# -- names: nothing in a plan file names a path ---------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["../../victim/snapshot", "/tmp/victim", "a" * 64 + "\n", "A" * 64, "a" * 63, "g" * 64],
    ids=["relative", "absolute", "trailing-newline", "uppercase", "short", "not-hex"],
)
@pytest.mark.parametrize("command", ["show", "apply"])
def test_a_delta_digest_that_is_not_64_hex_is_refused(
    applied: Path, saved: Path, tmp_path: Path, bad: str, command: str
) -> None:
    def edit(data: dict[str, Any]) -> None:
        first_delta(data)["delta"]["sha256"] = bad
        first_delta(data)["delta"]["file"] = f"{bad}.parquet"

    crafted = rewrite(saved, tmp_path / "crafted.segplan", edit)
    args = ["--format", "markdown", "--show-identifiers"] if command == "show" else []
    err = refused(applied, command, str(crafted), *args)
    assert "crafted.segplan" in err
    assert not (tmp_path / "victim").exists() and not Path("/tmp/victim.parquet").exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../evil.parquet", "is not part of a segops plan file"),
        ("deltas/../../evil.parquet", "is not part of a segops plan file"),
        ("/abs/evil.parquet", "is not part of a segops plan file"),
        ("notes.txt", "is not part of a segops plan file"),
        (f"deltas/{'0' * 64}.parquet", "is named by no change"),
        (f"deltas/{'0' * 64}.parquet/", "is not part of a segops plan file"),
    ],
)
def test_an_entry_the_plan_does_not_name_is_refused(
    applied: Path, saved: Path, tmp_path: Path, name: str, expected: str
) -> None:
    crafted = rewrite(saved, tmp_path / "crafted.segplan", extra={name: b"PAR1"})
    assert expected in refused(applied, "show", str(crafted))
    assert expected in refused(applied, "apply", str(crafted))


@pytest.mark.parametrize("twice", ["plan.json", "delta"])
def test_a_duplicate_entry_is_refused(
    applied: Path, saved: Path, tmp_path: Path, twice: str
) -> None:
    found = entries(saved)
    name = next(n for n in found if n.startswith("deltas/")) if twice == "delta" else twice
    crafted = tmp_path / "crafted.segplan"
    with warnings.catch_warnings(), zipfile.ZipFile(crafted, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate: that is the point
        for entry, content in found.items():
            archive.writestr(entry, content)
        archive.writestr(name, found[name])
    assert "appears twice" in refused(applied, "apply", str(crafted))


def test_a_missing_delta_is_refused(applied: Path, saved: Path, tmp_path: Path) -> None:
    name = next(n for n in entries(saved) if n.startswith("deltas/"))
    crafted = rewrite(saved, tmp_path / "crafted.segplan", extra={name: None})
    assert "is missing" in refused(applied, "apply", str(crafted))


# -- expansion: nothing in a plan file expands -------------------------------------------


def test_a_compressed_bomb_is_refused_before_it_is_read(
    applied: Path, saved: Path, tmp_path: Path
) -> None:
    found = entries(saved)
    crafted = tmp_path / "bomb.segplan"
    with zipfile.ZipFile(crafted, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("plan.json", found["plan.json"] + b" " * (200 << 20))
    assert crafted.stat().st_size < 1 << 20  # 200 MB of spaces deflate to a few hundred KB
    assert "compressed or encrypted" in refused(applied, "show", str(crafted))


@pytest.mark.parametrize("which", ["plan.json", "delta"])
def test_any_compressed_entry_is_refused(
    applied: Path, saved: Path, tmp_path: Path, which: str
) -> None:
    found = entries(saved)
    crafted = tmp_path / "deflated.segplan"
    with zipfile.ZipFile(crafted, "w") as archive:
        for name, content in found.items():
            is_target = name == which or (which == "delta" and name.startswith("deltas/"))
            kind = zipfile.ZIP_DEFLATED if is_target else zipfile.ZIP_STORED
            archive.writestr(name, content, compress_type=kind)
    assert "compressed or encrypted" in refused(applied, "apply", str(crafted))


def _patch_central_sizes(path: Path, name: str, size: int, fields: tuple[int, ...]) -> None:
    """Set size fields (offsets 20: compressed, 24: uncompressed) of `name`'s directory record."""
    data = bytearray(path.read_bytes())
    offset = data.find(b"PK\x01\x02")
    while offset != -1:
        name_len = int.from_bytes(data[offset + 28 : offset + 30], "little")
        if data[offset + 46 : offset + 46 + name_len] == name.encode():
            for field in fields:
                data[offset + field : offset + field + 4] = size.to_bytes(4, "little")
            path.write_bytes(bytes(data))
            return
        offset = data.find(b"PK\x01\x02", offset + 4)
    raise AssertionError(f"no directory record for {name}")


@pytest.mark.parametrize(
    ("size", "fields", "expected"),
    [
        (0, (24,), "declares two different sizes"),
        (10, (24,), "declares two different sizes"),
        (1 << 30, (24,), "declares two different sizes"),
        (1 << 30, (20, 24), "overlap"),
    ],
)
def test_declared_sizes_must_agree_and_fit_the_file(
    applied: Path, saved: Path, tmp_path: Path, size: int, fields: tuple[int, ...], expected: str
) -> None:
    crafted = tmp_path / "sizes.segplan"
    crafted.write_bytes(saved.read_bytes())
    _patch_central_sizes(crafted, "plan.json", size, fields)
    assert expected in refused(applied, "show", str(crafted))


def test_a_plan_json_past_the_limit_is_refused(
    applied: Path, saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planzip, "MAX_PLAN_JSON", 1000)
    assert "larger than" in refused(applied, "show", str(saved))


@pytest.mark.parametrize("kind", ["fifo", "folder", "missing", "junk"])
def test_only_a_regular_plan_file_is_read(applied: Path, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "p.segplan"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block forever
    elif kind == "folder":
        path.mkdir()
    elif kind == "junk":
        path.write_bytes(b"PK\x03\x04 not really")
    err = refused(applied, "apply", str(path))
    assert str(path) in err


# -- plan.json: strict -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"format_version": 1,', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"format_version": 1, "format_version": 1}', "a key appears twice"),
        (b'{"format_version": NaN}', "not valid JSON"),
    ],
    ids=["latin", "torn", "deep", "duplicate-key", "nan"],
)
def test_plan_json_must_be_plain_json(
    applied: Path, saved: Path, tmp_path: Path, body: bytes, expected: str
) -> None:
    crafted = rewrite(saved, tmp_path / "bad.segplan", extra={"plan.json": body})
    assert expected in refused(applied, "show", str(crafted))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(extra=1), "Additional properties"),
        (lambda d: cart(d)["members"].update(remove=-1), "changes/0/members/remove"),
        (lambda d: cart(d).update(actions=["explode"]), "changes/0/actions/0"),
        (lambda d: cart(d).update(platform="Evil\nPlatform"), "changes/0/platform"),
        (lambda d: d["state"].update(serial="1"), "state/serial"),
        (lambda d: cart(d)["settings"]["after"].update(x={"nested": 1}), "settings/after"),
        (lambda d: d["changes"].append(dict(cart(d))), "lists a destination address twice"),
    ],
    ids=["extra-key", "negative", "action", "platform", "serial-type", "nested", "twice"],
)
def test_plan_json_must_match_the_schema(
    applied: Path,
    saved: Path,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    crafted = rewrite(saved, tmp_path / "bad.segplan", edit)
    assert expected in refused(applied, "show", str(crafted))
    assert expected in refused(applied, "apply", str(crafted))


# -- apply recomputes the plan and refuses any difference -----------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target = cart(data)
        *parents, last = path.split(".")
        for key in parents:
            target = target[key]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_set("settings.after.segment_technical_name", "other"), "settings.after.segment_tech"),
        (_set("address", "cart.elsewhere"), "cart.elsewhere: in the plan, but not"),
        (_set("members.remove", 0), "members.remove: the plan says 0"),
        (_set("members.add", 5), "members.add: the plan says 5"),
        (_set("members.before", 19), "members.before"),
        (_set("actions", ["add"]), "actions"),
        (_set("guards", []), "guards: the plan says [], the workspace and state give"),
        (_set("base_snapshot", "0" * 64), "base_snapshot"),
        (_set("operations", 0), "operations"),
        (_set("attributes", ["data_bag"]), "attributes"),
        (_set("key_encoding", "text"), "key_encoding"),
        (_set("connection", "files-mics-csv"), "connection"),
        (_set("reason", "nothing to see"), "reason"),
        (lambda d: d.update(segops_version="0.0.1"), "made by segops 0.0.1"),
        (lambda d: d.update(selection="--segment vip"), "the plan's selection does not pick it"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_edited_plan_is_refused_naming_the_difference(
    applied: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None], named: str
) -> None:
    members(applied, "cart", HASHES[10:])  # 10 of 20 removed: the guard trips
    saved = tmp_path / "p.segplan"
    assert run(applied, "plan", "-out", str(saved))[0] == 3
    crafted = rewrite(saved, tmp_path / "edited.segplan", edit)
    err = refused(applied, "apply", str(crafted), "--allow-removals", "cart")
    assert named in err
    assert "nothing was applied" in err or "stale" in err or "no safety guard" in err


@pytest.mark.parametrize(
    "selection", [[], ["--segment", "*"], ["--segment", "*", "--exclude", "vip"]]
)
def test_a_plan_missing_a_segment_it_was_made_for_is_refused(
    applied: Path, tmp_path: Path, selection: list[str]
) -> None:
    saved = tmp_path / "p.segplan"
    assert run(applied, "plan", "-out", str(saved), *selection)[0] == 0
    delta = cart(json.loads(entries(saved)["plan.json"]))["delta"]["file"]
    crafted = rewrite(
        saved,
        tmp_path / "dropped.segplan",
        lambda d: d["changes"].remove(cart(d)),
        extra={f"deltas/{delta}": None},
    )
    assert "segment cart: the plan leaves it out" in refused(applied, "apply", str(crafted))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: cart(d).update(action="create"), "cart.files-mics: action is 'create'"),
        (lambda d: d["summary"]["members"].update(remove=0), "summary does not add up"),
        (lambda d: d["summary"].update(guards_tripped=0), "summary does not add up"),
    ],
    ids=["action", "summary", "guards"],
)
def test_derived_fields_must_agree_with_the_plan(
    applied: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    members(applied, "cart", HASHES[10:])  # the guard trips
    saved = tmp_path / "p.segplan"
    assert run(applied, "plan", "-out", str(saved))[0] == 3
    crafted = rewrite(saved, tmp_path / "edited.segplan", edit, consistent=False)
    assert expected in refused(applied, "show", str(crafted))


def _delta(path: Path, ops: list[tuple[str, str]]) -> bytes:
    rows = ", ".join(f"('{op}', unhex('{key}'))" for op, key in ops)
    duckdb.sql(f"COPY (SELECT * FROM (VALUES {rows}) t(op, k)) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


def test_an_attacker_delta_with_a_matching_digest_is_refused(
    applied: Path, saved: Path, tmp_path: Path
) -> None:
    # Remove every applied member of cart, with counts that look like the reviewed ones.
    data = _delta(tmp_path / "evil.parquet", [("remove", x) for x in HASHES])
    digest = hashlib.sha256(data).hexdigest()
    old = cart(json.loads(entries(saved)["plan.json"]))["delta"]["sha256"]

    def edit(plan: dict[str, Any]) -> None:
        cart(plan)["delta"].update(sha256=digest, file=f"{digest}.parquet")

    crafted = rewrite(
        saved,
        tmp_path / "evil.segplan",
        edit,
        extra={f"deltas/{old}.parquet": None, f"deltas/{digest}.parquet": data},
    )
    assert "delta.sha256" in refused(applied, "apply", str(crafted))


def test_the_untampered_plan_applies_and_sends_what_it_says(
    applied: Path, saved: Path, tmp_path: Path
) -> None:
    shown = json.loads(run(applied, "show", str(saved), "--format", "json")[1])
    code, out, err = run(applied, "apply", str(saved))
    assert code == 0, err
    assert "cart.files-mics: done (+1 ~0 -3 sent" in out
    assert [c["members"]["remove"] for c in shown["changes"]] == [3, 0]
    assert run(applied, "plan", "--detailed-exitcode")[0] == 0


def test_a_selected_plan_applies_only_its_segments(applied: Path, tmp_path: Path) -> None:
    saved = tmp_path / "p.segplan"
    assert run(applied, "plan", "-out", str(saved), "--segment", "c*")[0] == 0
    code, out, err = run(applied, "apply", str(saved))
    assert code == 0, err
    assert "cart.files-mics: done" in out and "vip" not in out


# -- signatures ------------------------------------------------------------------------------


def test_a_signed_plan_applies_with_its_key(applied: Path, tmp_path: Path) -> None:
    saved = tmp_path / "p.segplan"
    assert run_env(applied, {"SEGOPS_PLAN_KEY": KEY}, "plan", "-out", str(saved))[0] == 0
    assert "plan.json.hmac-sha256" in entries(saved)
    assert KEY.encode() not in saved.read_bytes()
    code, _, err = run_env(applied, {"SEGOPS_PLAN_KEY": KEY}, "apply", str(saved))
    assert code == 0, err


@pytest.mark.parametrize(
    ("plan_env", "apply_env", "expected"),
    [
        ({}, {"SEGOPS_PLAN_KEY": KEY}, "the plan is not signed"),
        ({"SEGOPS_PLAN_KEY": KEY}, {"SEGOPS_PLAN_KEY": "x" * 40}, "signature does not match"),
        ({"SEGOPS_PLAN_KEY": KEY}, {}, "the plan is signed, but SEGOPS_PLAN_KEY is not set"),
        ({}, {"SEGOPS_PLAN_KEY": ""}, "set but empty"),
        ({}, {"SEGOPS_PLAN_KEY": "short"}, "shorter than 32"),
    ],
    ids=["unsigned", "other-key", "no-key", "empty-key", "short-key"],
)
def test_signatures_are_checked(
    applied: Path,
    tmp_path: Path,
    plan_env: dict[str, str],
    apply_env: dict[str, str],
    expected: str,
) -> None:
    saved = tmp_path / "p.segplan"
    assert run_env(applied, plan_env, "plan", "-out", str(saved))[0] == 0
    err = refused(applied, "apply", str(saved), env=apply_env)
    assert expected in err
    assert KEY not in err and "x" * 40 not in err


@pytest.mark.parametrize(
    "edit",
    [lambda d: d["summary"]["members"].update(add=0), lambda d: d.update(selection=None)],
    ids=["summary", "selection"],
)
def test_any_edit_of_a_signed_plan_breaks_its_signature(
    applied: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    """Even the display-only parts a recomputation cannot check."""
    saved = tmp_path / "p.segplan"
    run_env(applied, {"SEGOPS_PLAN_KEY": KEY}, "plan", "-out", str(saved))
    crafted = rewrite(saved, tmp_path / "edited.segplan", edit, consistent=False)
    env = {"SEGOPS_PLAN_KEY": KEY}
    assert "signature does not match" in refused(applied, "show", str(crafted), env=env)
    assert "signature does not match" in refused(applied, "apply", str(crafted), env=env)


# -- at rest ---------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o077])
def test_a_plan_file_is_private_whatever_the_umask(
    applied: Path, tmp_path: Path, umask: int
) -> None:
    saved = tmp_path / "p.segplan"
    old = os.umask(umask)
    try:
        assert run(applied, "plan", "-out", str(saved))[0] == 0
    finally:
        os.umask(old)
    assert saved.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.segplan")] == []


def test_a_failed_save_leaves_neither_the_plan_nor_a_partial_file(
    applied: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = tmp_path / "p.segplan"
    real = zipfile.ZipFile.writestr

    def fail_after_plan_json(self: zipfile.ZipFile, info: Any, data: Any, *a: Any) -> None:
        real(self, info, data, *a)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail_after_plan_json)
    code, _, err = run(applied, "plan", "-out", str(saved))
    assert code == 1 and "cannot write the plan" in err and "No space left" in err
    assert list(tmp_path.glob("*p.segplan*")) == []


def test_partial_plans_of_killed_runs_are_removed(applied: Path, tmp_path: Path) -> None:
    dead = tmp_path / ".p.segplan.999999999.0123abcd.tmp"  # no such process id
    alive = tmp_path / f".p.segplan.{os.getpid()}.0123abcd.tmp"
    other = tmp_path / ".q.segplan.999999999.0123abcd.tmp"
    for path in (dead, alive, other):
        path.write_bytes(b"partial")
    assert run(applied, "plan", "-out", str(tmp_path / "p.segplan"))[0] == 0
    assert not dead.exists()
    assert alive.exists() and other.exists()
