"""The pull-request comment: golden files under tests/golden/markdown/<case>/comment.md.

Plans come from the real CLI on workspaces written into tmp_path (a small one, and one of
1,000 segments that must fit the comment budget), except the tripped-guard case, built as
values. `make golden` (SEGOPS_UPDATE_GOLDEN=1) rewrites the golden files: review the diff.
"""

from __future__ import annotations

import hashlib
import random
import re
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from segops.model import (
    Action,
    DestinationChange,
    GuardTrip,
    KeyEncoding,
    MemberCounts,
    Plan,
    Platform,
    SettingChange,
)
from segops.planning.planfile import read_plan
from segops.render.markdown import MARKER, SAMPLE_SIZE, render_markdown
from tests.conftest import check_golden, mics_manifest, run, write_tree

GOLDEN = Path(__file__).parent / "golden" / "markdown"
ARTIFACT = "the `segops-plan` workflow artifact"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _csv(column: str, values: list[str]) -> str:
    return "\n".join([column, *values]) + "\n"


_mics = mics_manifest


def _moe(name: str, emails: list[str]) -> str:
    members = "".join(f"\n      - {{email: {e}}}" for e in emails)
    return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: {name}}}
spec:
  source:
    members:{members}
  destinations:
    - connection: files-moe
      segment: {{name: {name}_customers}}
      attribute: {{name: email, type: string}}
"""


def _plan_of(
    root: Path, tmp_path: Path, before: Mapping[str, str], after: Mapping[str, str]
) -> Plan:
    """Apply the `before` files, replace them by `after`, and return the saved plan."""
    write_tree(root, before)
    code, _, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    for name in before:
        (root / name).unlink()
    write_tree(root, after)
    plan_file = tmp_path / "plan.segplan"
    code, _, err = run(root, "plan", "-out", str(plan_file))
    assert code in (0, 3), err  # 3: a safety guard stops a change; the plan is saved all the same
    return read_plan(plan_file).plan


def _normalised(plan: Plan) -> Plan:
    """Replace what varies between runs and releases (lineage, digests, version)."""
    changes = tuple(replace(c, delta=None, base="") for c in plan.changes)
    lineage = "<lineage>" if plan.lineage else None
    return replace(
        plan, segops_version="0.0.0", lineage=lineage, definitions=(), data=(), changes=changes
    )


def _small_files() -> tuple[dict[str, str], dict[str, str]]:
    cart = [_sha(f"cart-{i}") for i in range(5)]
    churn = [_sha(f"churn-{i}") for i in range(3)]
    before = {
        "segments/cart.yaml": _mics("cart", "csv: {path: ../data/cart.csv}", "cart"),
        "data/cart.csv": _csv("email_hash", cart),
        "segments/churn.yaml": _mics("churn", "csv: {path: ../data/churn.csv}", "churn"),
        "data/churn.csv": _csv("email_hash", churn),
        "segments/old.yaml": _mics("old", "csv: {path: ../data/old.csv}", "old"),
        "data/old.csv": _csv("email_hash", [_sha("old-0"), _sha("old-1")]),
        "segments/vip.yaml": _moe("vip", ["ada@example.com", "grace@example.com"]),
    }
    after = {
        **{k: v for k, v in before.items() if "old" not in k},
        "data/cart.csv": _csv("email_hash", [*cart[1:], _sha("cart-5")]),  # update
        "segments/churn.yaml": _mics(
            "churn", "csv: {path: ../data/churn.csv}", "churn_v2"
        ),  # recreate
        "segments/fresh.yaml": _mics(
            "fresh", "csv: {path: ../data/fresh.csv}\n    on_bad_rows: skip", "fresh"
        ),
        "data/fresh.csv": _csv("email_hash", [_sha("fresh-0"), "not-a-hash", _sha("fresh-1")]),
        "segments/loyal.yaml": _moe("loyal", ["alan@example.com", "barbara@example.com"]),
        "segments/promo.yaml": _mics(
            "promo", "members:\n      - {email_hash: " + _sha("promo-0") + "}", "promo"
        ),
    }
    return before, after


def _large_files() -> tuple[dict[str, str], dict[str, str]]:
    """1,000 segments of 8 members; then most change, some are recreated or destroyed."""
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for i in range(1005):
        members = [_sha(f"s{i}-{j}") for j in range(8)]
        kept = members[3:] if i % 100 == 3 else members[1:] if i % 10 < 8 else members
        added = [_sha(f"s{i}-new-{j}") for j in range(i % 13)] if i % 10 < 8 else []
        name = f"s{i:04d}"
        tech = f"{name}_v2" if i % 50 == 1 else name
        if i % 2:
            files = {f"data/{name}.csv": _csv("email_hash", members)}
            new = {f"data/{name}.csv": _csv("email_hash", kept + added)}
            source = f"csv: {{path: ../data/{name}.csv}}"
            yaml = (_mics(name, source, name), _mics(name, source, tech))
        else:
            rows = "".join(f"\n      - {{email_hash: {m}}}" for m in members)
            new_rows = "".join(f"\n      - {{email_hash: {m}}}" for m in kept + added)
            yaml = (_mics(name, f"members:{rows}", name), _mics(name, f"members:{new_rows}", tech))
            files, new = {}, {}
        if i < 1000:
            before |= files | {f"segments/{name}.yaml": yaml[0]}
        if i < 995 or i >= 1000:
            after |= new | {f"segments/{name}.yaml": yaml[1]}
    return before, after


def _source_values(files: Mapping[str, str]) -> set[str]:
    """Every identifier-like value (8 characters or more) of the sources in `files`."""
    values = set()
    for text in files.values():
        values |= set(re.findall(r"[0-9a-f]{64}|[\w.]+@[\w.]+", text))
    return {v for v in values if len(v) >= 8}


def _samples(plan_file: Path, plan: Plan, tmp: Path) -> dict[str, list[str]]:
    """Read the first keys of each delta, as the CLI does for --show-identifiers."""
    with zipfile.ZipFile(plan_file) as archive:
        archive.extractall(tmp / "extracted")
    samples = {}
    for change in plan.changes:
        if change.delta is None:
            continue
        key = "lower(hex(k))" if change.encoding is KeyEncoding.HEX else "k"
        path = tmp / "extracted" / "deltas" / change.delta.name
        rows = duckdb.execute(
            f"SELECT {key} FROM read_parquet('{path}') LIMIT {SAMPLE_SIZE}"
        ).fetchall()
        samples[change.address] = [str(r[0]) for r in rows]
    return samples


@pytest.fixture
def small(workspace: Path, tmp_path: Path) -> tuple[Plan, set[str]]:
    before, after = _small_files()
    plan = _plan_of(workspace, tmp_path, before, after)
    return plan, _source_values(before) | _source_values(after)


def test_small_plan(small: tuple[Plan, set[str]]) -> None:
    plan, identifiers = small
    comment = render_markdown(_normalised(plan), artifact=ARTIFACT)
    check_golden(GOLDEN / "small" / "comment.md", comment)
    assert comment.splitlines()[0] == MARKER
    assert not [v for v in identifiers if v in comment]
    assert comment.rstrip().endswith(f"Full plan: {ARTIFACT}")


def test_small_plan_without_artifact_names_the_command(small: tuple[Plan, set[str]]) -> None:
    comment = render_markdown(small[0])
    assert comment.rstrip().splitlines()[-1].startswith("Full plan: run `segops show plan.segplan`")


def test_identifiers_only_masked_and_only_when_asked(workspace: Path, tmp_path: Path) -> None:
    before, after = _small_files()
    plan = _plan_of(workspace, tmp_path, before, after)
    identifiers = _source_values(before) | _source_values(after)
    samples = _samples(tmp_path / "plan.segplan", plan, tmp_path)
    assert any(samples.values())
    hidden = render_markdown(plan, samples=samples)
    assert not [v for v in identifiers if v in hidden]
    assert "Sample of members" not in hidden
    shown = render_markdown(plan, show_identifiers=True, samples=samples)
    assert not [v for v in identifiers if v in shown]
    for values in samples.values():
        for value in values[:SAMPLE_SIZE]:
            assert f"<code>{value[:4]}…</code> ({len(value)} chars)" in shown


def test_masking_bounds_the_sample_and_short_values() -> None:
    plan = _guard_plan()
    values = [f"person-{i:02d}@example.com" for i in range(20)] + ["abcdef"]
    comment = render_markdown(plan, show_identifiers=True, samples={"cart.files-mics": values})
    sample = next(line for line in comment.splitlines() if "Sample of members" in line)
    assert sample.count("…") == SAMPLE_SIZE
    assert "<code>abc…</code> (6 chars)" in sample  # at most half of a short value
    assert not [v for v in values if v in comment]


def test_thousand_segments_fit_the_budget(workspace: Path, tmp_path: Path) -> None:
    before, after = _large_files()
    plan = _plan_of(workspace, tmp_path, before, after)
    assert sum(c.is_change for c in plan.changes) > 800
    comment = render_markdown(_normalised(plan), artifact=ARTIFACT)
    check_golden(GOLDEN / "thousand" / "comment.md", comment)
    assert len(comment) <= 60_000
    assert comment.splitlines()[0] == MARKER
    assert "more destinations with changes" in comment
    assert comment.rstrip().endswith(f"Full plan: {ARTIFACT}")
    assert "[!CAUTION]" in comment
    rows = [line for line in comment.splitlines() if re.match(r"\| s\d{4} ", line)]
    stopped = len(plan.tripped)
    assert stopped and all("⛔" in r for r in rows[:stopped])
    assert all("**recreate**" in r for r in rows[stopped : stopped + 20])
    assert "recreated" in comment.split("</details>")[stopped]  # details of the first recreate
    identifiers = _source_values(before) | _source_values(after)
    assert not [v for v in identifiers if v in comment]


def _change(address: str, **fields: object) -> DestinationChange:
    segment, connection = address.split(".", 1)
    base: dict[str, object] = {
        "address": address,
        "segment": segment,
        "connection": connection,
        "platform": Platform.MEDIARITHMICS,
        "actions": (Action.REMOVE,),
        "settings_before": (("segment_technical_name", segment),),
        "settings_after": (("segment_technical_name", segment),),
        "setting_changes": (),
        "members": MemberCounts(before=1000, after=400, remove=600),
        "delta": None,
        "encoding": KeyEncoding.HEX,
        "operations": 1,
    }
    return DestinationChange(**{**base, **fields})  # type: ignore[arg-type]


def _guard_plan() -> Plan:
    """A plan where guards stop two destinations, built as values."""
    trip = GuardTrip(
        "max-removal-fraction",
        "600 of 1,000 members (60%) would be removed, more than the 25% allowed",
    )
    changes = (
        _change("cart.files-mics", guards=(trip,)),
        _change(
            "gone.files-mics",
            actions=(Action.DESTROY,),
            settings_after=None,
            members=MemberCounts(before=50, after=0, remove=50),
            reason="its manifest was removed",
            guards=(
                GuardTrip("max-removal-fraction", "50 of 50 members (100%) would be removed"),
                GuardTrip("max-removals", "50 members would be removed, more than the 10 allowed"),
            ),
        ),
        _change(
            "vip.moe-eu",
            platform=Platform.MOENGAGE,
            actions=(Action.ADD,),
            members=MemberCounts(before=10, after=3010, add=3000),
            operations=2,
            eta="now; the last of 2 by 2026-11-24 09:00 UTC",
        ),
        _change(
            "x|y<b>`z`*_q_.files-mics",
            actions=(Action.RECREATE,),
            members=MemberCounts(before=5, after=5, add=5, remove=5),
            setting_changes=(SettingChange("segment_technical_name", "a|b", "<c>", "recreate"),),
            reason="segment_technical_name changed",
        ),
    )
    return Plan("0.0.0", "<lineage>", 7, (), (), changes)


def test_tripped_guard() -> None:
    comment = render_markdown(_guard_plan(), artifact=ARTIFACT)
    check_golden(GOLDEN / "guard" / "comment.md", comment)
    caution = comment.split("> [!CAUTION]\n", 1)[1].split("\n\n", 1)[0]
    assert "<code>cart.files-mics</code> · <code>max-removal-fraction</code>: 600 of" in caution
    assert "<code>gone.files-mics</code> · <code>max-removals</code>" in caution
    assert "--allow-removals cart --allow-removals gone" in caution
    table = [line for line in comment.splitlines() if line.startswith("| ")][1:]
    status = {r.split(" | ")[0][2:]: r.split(" | ")[6] for r in table}
    assert status == {
        "cart": "⛔ max-removal-fraction",
        "gone": "⛔ max-removal-fraction, max-removals",
        "vip": "✅",
        r"x\|y&lt;b&gt;\`z\`\*\_q\_": "✅",
    }


def test_names_are_escaped() -> None:
    comment = render_markdown(_guard_plan())
    assert "<b>" not in comment and "`z`" not in comment
    assert "<summary><code>x|y&lt;b&gt;&#96;z&#96;*_q_.files-mics</code>" in comment
    for row in (line for line in comment.splitlines() if line.startswith("| ")):
        assert len(re.findall(r"(?<!\\)\|", row)) == 10  # nine cells, none split


def test_no_changes() -> None:
    plan = Plan("0.0.0", None, 3, (), (), (_change("a.files-mics", actions=(Action.NO_OP,)),))
    comment = render_markdown(plan)
    assert comment.startswith(f"{MARKER}\n### segops plan: no changes\n")
    assert "<details>" not in comment and "| segment |" not in comment


def test_deterministic(small: tuple[Plan, set[str]]) -> None:
    plan = small[0]
    shuffled = list(plan.changes)
    random.Random(4).shuffle(shuffled)
    first = render_markdown(plan, artifact=ARTIFACT)
    assert first == render_markdown(plan, artifact=ARTIFACT)
    assert first == render_markdown(replace(plan, changes=tuple(shuffled)), artifact=ARTIFACT)


def test_summary_keeps_guards_and_totals_under_any_budget() -> None:
    plan = _guard_plan()
    full = render_markdown(plan)
    for budget in (1_500, 2_000, 2_500):
        comment = render_markdown(plan, max_chars=budget)
        assert len(comment) <= budget < len(full)
        assert "> [!CAUTION]" in comment and "**Members:**" in comment
        assert comment.splitlines()[0] == MARKER
        assert comment.rstrip().splitlines()[-1].startswith("Full plan:")
