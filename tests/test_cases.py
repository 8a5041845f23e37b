"""Planner cases as data: tests/cases/plan/<name>/case.yaml -> expected.json + expected.txt.

A case names the files of a workspace `before` (applied first, if given) and `after`
(planned). The plan is compared with expected.json (the JSON plan, with the members of
each delta read back) and expected.txt (the text plan). `make golden` rewrites them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from tests.conftest import (
    SEGOPS_YAML,
    addresses_through,
    check_golden,
    file_pin,
    run,
    with_engine,
    write_tree,
)

CASES = Path(__file__).parent / "cases" / "plan"


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if (p / "case.yaml").exists())


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_plan_case(case: Path, tmp_path: Path) -> None:
    _ON_DUCKDB[case.name] = _plan_case(case, tmp_path, {})


_ON_DUCKDB: dict[str, _Planned] = {}  # what test_plan_case found, for the Spark comparison


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_plan_case_on_spark(
    case: Path, tmp_path: Path, spark_remote: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same case on the Spark engine gives the golden plan, and the very plan the DuckDB
    engine gives: the same text, the same delta files and snapshots (their sha256 names).

    Files are cut into pieces of 64 bytes, one Spark task each, as a large file would be.
    """
    from segops.engine import spark_tasks

    monkeypatch.setattr(spark_tasks, "PIECE_BYTES", 64)
    on_duckdb = _ON_DUCKDB.get(case.name) or _plan_case(case, tmp_path / "duckdb", {})
    on_spark = _plan_case(case, tmp_path / "spark", {"kind": "spark", "remote": spark_remote})
    assert "Spark could not" not in on_spark.log, on_spark.log  # no fallback to DuckDB
    assert on_spark.text == on_duckdb.text
    assert on_spark.plan == on_duckdb.plan


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_plan_case_by_key_ranges(
    case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large diff of hash keys joins one range of keys at a time (DuckDBEngine
    `_diff_by_key_ranges`): forced on every case, it gives the golden plan and the very plan
    of the one join, delta files and snapshots included (their sha256 names)."""
    from segops.engine.duck import DuckDBEngine

    whole = _ON_DUCKDB.get(case.name) or _plan_case(case, tmp_path / "whole", {})
    monkeypatch.setattr(DuckDBEngine, "KEY_RANGES_FROM", 0)
    monkeypatch.setattr(DuckDBEngine, "KEY_RANGES_BYTES", 0)
    ranged = addresses_through(monkeypatch, DuckDBEngine, "_diff_by_key_ranges")
    planned = _plan_case(case, tmp_path / "ranges", {})
    assert planned.text == whole.text
    assert planned.plan == whole.plan
    joined = {
        c["address"]
        for c in planned.plan["changes"]
        if c["key_encoding"] == "hex" and c["action"] == "update"  # a member diff, both sides
    }
    assert joined <= set(ranged)


@dataclass
class _Planned:
    plan: dict[str, Any]  # the JSON plan, lineage and workspace paths aside
    text: str
    log: str  # stderr of the plan


def _plan_case(case: Path, tmp_path: Path, engine: dict[str, str]) -> _Planned:
    spec = yaml.safe_load((case / "case.yaml").read_text())
    root = tmp_path / "ws"
    segops_yaml = spec.get("segops", SEGOPS_YAML)
    write_tree(root, {"segops.yaml": with_engine(segops_yaml, engine) if engine else segops_yaml})
    if "before" in spec:
        write_tree(root, spec["before"])
        code, _, err = run(root, "apply", "--auto-approve")
        assert code == 0, err
        for name in spec["before"]:
            (root / name).unlink()
    write_tree(root, spec["after"])
    for name in spec.get("crlf", ()):
        path = root / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    plan_file = tmp_path / "case.segplan"
    plan_code, text, log = run(root, "plan", "-out", str(plan_file))
    assert plan_code in (0, 3), log  # 3: a safety guard stops the plan (recorded in expected.json)
    code, out, err = run(root, "show", str(plan_file), "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    raw = json.loads(out)
    raw["state"]["lineage"] = None
    raw["inputs"]["definitions"] = [f["path"] for f in raw["inputs"]["definitions"]]
    check_golden(
        case / "expected.json",
        json.dumps(_normalised(plan, plan_file, tmp_path, root), indent=2) + "\n",
    )
    assert (plan_code == 3) == any(c["guards"] for c in plan["changes"])
    text = text.replace(f"segops -C {root} ", "segops ")  # hints repeat -C: not in golden files
    text = text.split("\nSaved the plan to:")[0]
    check_golden(case / "expected.txt", text)
    return _Planned(raw, text, log)


def _normalised(plan: dict[str, Any], plan_file: Path, tmp: Path, root: Path) -> dict[str, Any]:
    """Replace what varies between runs (lineage, file digests) and read each delta back."""
    plan["state"]["lineage"] = "<lineage>" if plan["state"]["lineage"] else None
    plan["segops_version"] = "<version>"
    inputs = plan["inputs"]
    inputs["definitions"] = [f["path"] for f in inputs["definitions"]]
    for pin in inputs["data"]:
        assert pin["pin"] == file_pin(root / pin["source"])
        pin["pin"] = "<pin>"
    extract = tmp / "deltas"
    shutil.unpack_archive(plan_file, extract, format="zip")
    for change in plan["changes"]:
        if change["base_snapshot"]:  # a digest of DuckDB's Parquet bytes: not this test's concern
            change["base_snapshot"] = "<sha256>"
        delta = change.pop("delta")
        if delta is None:
            change["delta_rows"] = []
            continue
        path = extract / "deltas" / delta["file"]
        key = "lower(hex(k))" if change["key_encoding"] == "hex" else "k"
        rows = duckdb.execute(
            f"SELECT op, {key} AS k, * EXCLUDE (op, k) FROM read_parquet('{path}')"
        ).fetchall()
        assert len(rows) == delta["rows"]
        change["delta_rows"] = [list(r) for r in rows]
    return plan
