"""A large diff of hash keys joins one range of keys at a time, with the plan of one join.

DuckDBEngine joins by key ranges from 3e7 applied members when memory_limit allows
(`_diff_by_key_ranges`); here the thresholds are lowered so a few thousand members take
that path. Keys fall in all sixteen ranges; some members go, some come, some change their
data bag, a member appears twice, bad rows are skipped: the plan, its delta file and the
applied snapshot must be the bytes of the one join.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from segops.engine import deltas
from segops.engine.duck import DuckDBEngine
from tests.conftest import SEGOPS_YAML, addresses_through, mics_manifest, run, write_tree

MEMBERS = 3000


def h(i: int) -> str:
    return hashlib.sha256(f"member-{i}@example.com".encode()).hexdigest()


def members_csv(ids: range | list[int], bag_of: dict[int, int], bad: int = 0) -> str:
    lines = ["email_hash,basket"]
    lines += [f'{h(i)},"{{""items"": {bag_of.get(i, 1)}}}"' for i in ids]
    lines += ["NOT-A-HASH,"] * bad
    return "\n".join(lines) + "\n"


def workspace(root: Path) -> None:
    extra = "      data_bag: {column: basket}\n"
    manifest = mics_manifest(
        "cart", "csv: {path: ../data/m.csv}\n    on_bad_rows: skip", extra=extra
    )
    write_tree(
        root,
        {
            "segops.yaml": SEGOPS_YAML,
            "segments/cart.yaml": manifest,
            "data/m.csv": members_csv(range(MEMBERS), {}),
        },
    )
    code, _, err = run(root, "apply", "--auto-approve")
    assert code == 0, err
    ids = [i for i in range(MEMBERS) if i % 37] + list(range(MEMBERS, MEMBERS + 80)) + [5, 5]
    bags = {i: 2 for i in range(0, MEMBERS, 101)}
    (root / "data" / "m.csv").write_text(members_csv(ids, bags, bad=3))


def planned(root: Path) -> tuple[str, dict[str, bytes], str]:
    """Plan and apply; return the text plan, the plan file's entries and the snapshot name."""
    plan_file = root / "p.segplan"
    code, text, err = run(root, "plan", "-out", str(plan_file))
    assert code == 0, err
    with zipfile.ZipFile(plan_file) as archive:
        entries = {
            name: archive.read(name) for name in archive.namelist() if name.startswith("deltas/")
        }
        plan = json.loads(archive.read("plan.json"))
    code, _, err = run(root, "apply", "--auto-approve", str(plan_file))
    assert code == 0, err
    snapshots = sorted(p.name for p in (root / ".segops" / "snapshots").glob("*.parquet"))
    counts = json.dumps([c["members"] for c in plan["changes"]])
    return text.replace(str(root), "<root>"), entries, f"{counts} {snapshots}"


@pytest.mark.parametrize("ranges", [2, 4, 8, 16])
def test_each_key_is_in_one_range_the_one_its_first_byte_says(ranges: int) -> None:
    import duckdb

    conditions = ", ".join(deltas.in_key_range_sql("k", i, ranges) for i in range(ranges))
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT b, {deltas.key_range_sql('k', ranges)}, [{conditions}] FROM (SELECT b, "
            "unhex(printf('%02x', b) || 'ff00') AS k FROM range(256) t(b) "
            "UNION ALL SELECT -1, NULL)"
        )
        .fetchall()
    )
    for byte, found, inside in rows[:256]:
        assert found == byte * ranges // 256 and inside.index(True) == found and sum(inside) == 1
    assert rows[256][1] is None and not any(rows[256][2])  # no key: no range


def test_the_members_cover_every_range() -> None:
    import duckdb

    ranges = (
        duckdb.connect()
        .execute(
            f"SELECT count(DISTINCT {deltas.key_range_sql('unhex(x)', 16)}) "
            "FROM (SELECT unnest($1) AS x)",
            [[h(i) for i in range(MEMBERS)]],
        )
        .fetchone()
    )
    assert ranges == (16,)


@pytest.fixture
def used(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The addresses diffed by key ranges; from 1,000 applied members, in 16 ranges."""
    monkeypatch.setattr(DuckDBEngine, "KEY_RANGES_FROM", 1000)
    monkeypatch.setattr(DuckDBEngine, "KEY_RANGE_MEMBERS", 100)  # 3,000 members: 16 ranges
    return addresses_through(monkeypatch, DuckDBEngine, "_diff_by_key_ranges")


def test_a_diff_by_key_ranges_gives_the_plan_of_one_join(
    tmp_path: Path, used: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace(tmp_path / "one-join")
    workspace(tmp_path / "ranges")
    with monkeypatch.context() as patched:
        patched.setattr(DuckDBEngine, "KEY_RANGES_FROM", 10**12)
        one_join = planned(tmp_path / "one-join")
    assert used == []
    ranges = planned(tmp_path / "ranges")
    assert set(used) == {"cart.files-mics"}  # twice: the bad rows refuse the optimistic run
    assert ranges == one_join
    assert "3 bad source rows skipped" in one_join[0], one_join[0]


def test_a_memory_limit_too_small_for_the_keys_keeps_the_one_join(
    tmp_path: Path, used: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The desired keys of a diff by ranges are held in memory: under KEY_RANGES_BYTES a
    member of memory_limit (here 1.25GB for 3,000 members at 1 GB each) they would spill."""
    monkeypatch.setattr(DuckDBEngine, "KEY_RANGES_BYTES", 10**9)
    workspace(tmp_path)
    planned(tmp_path)
    assert used == []
