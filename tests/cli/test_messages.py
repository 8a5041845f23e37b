"""Messages people read: what is checked first, hints that run as printed, plurals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segops.cli import app
from tests.conftest import mics_manifest, run, write_tree

API_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
connections:
  files-mics: {platform: files, target: mediarithmics, path: out}
  mics:
    platform: mediarithmics
    base_url: http://127.0.0.1:9
    token_env: SEGOPS_TEST_UNSET_TOKEN
"""
API_MANIFEST = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: api}
spec:
  source:
    members: [{email_hash: 8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11}]
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: api
      identifier: {kind: email_hash, format: sha256}
"""


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SEGOPS_TEST_UNSET_TOKEN", raising=False)
    root = tmp_path / "ws"
    write_tree(root, {"segops.yaml": API_YAML, "segments/api.yaml": API_MANIFEST})
    return root


def test_a_missing_secret_is_said_before_the_question(api: Path) -> None:
    """Without --auto-approve and off a terminal, the question would be refused: the missing
    variable is what is reported, so it was checked before asking."""
    code, out, err = run(api, "apply", input="yes\n")
    assert code == 1
    assert "SEGOPS_TEST_UNSET_TOKEN (API token) is not set" in err
    assert "Do you want to perform" not in out and "terminal" not in err
    assert not (api / ".segops" / "state.json").exists()


def test_allow_removals_without_a_plan_file_is_refused_before_planning(api: Path) -> None:
    # A broken source: planning would fail on it; the usage error comes first.
    write_tree(api, {"segments/bad.yaml": mics_manifest("bad", "csv: {path: ../nope.csv}")})
    code, out, err = run(api, "apply", "--auto-approve", "--allow-removals", "api")
    assert (code, out) == (1, "")
    assert err.startswith("Usage error: --allow-removals needs a saved plan")
    assert not (api / ".segops").exists()


def test_hints_repeat_the_folder_and_the_file_name_given(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(workspace, {"segments/a.yaml": mics_manifest("a", "members: []")})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["-C", "ws", "plan", "-out", "my plan.segplan"])
    assert "To apply exactly this plan, run: segops -C ws apply 'my plan.segplan'" in (
        result.stdout
    )
    assert "segops apply <saved plan> --allow-removals a" not in result.stdout
    assert "segops -C ws apply <saved plan> --allow-removals a" in result.stdout
    (tmp_path / "ws" / ".segops").mkdir()
    (tmp_path / "ws" / ".segops" / "journal.jsonl").write_text("not json\n")
    result = CliRunner().invoke(app, ["-C", "ws", "apply", "--auto-approve"])
    assert result.exit_code == 1
    assert "add --allow-new-state to `segops -C ws apply`" in result.stderr


def test_without_a_folder_hints_stay_short(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(workspace, {"segments/a.yaml": mics_manifest("a", "members: []")})
    monkeypatch.chdir(workspace)
    result = CliRunner().invoke(app, ["plan", "-out", "p.segplan"])
    assert "To apply exactly this plan, run: segops apply p.segplan" in result.stdout


def test_counts_of_one_are_singular(workspace: Path) -> None:
    one = mics_manifest("one", "members: [{email_hash: %s}]" % ("a" * 64))
    write_tree(workspace, {"segments/one.yaml": one})
    assert run(workspace, "validate")[1] == "Success! 1 segment and 1 destination are valid.\n"
    code, out, _ = run(workspace, "apply", "--auto-approve")
    assert code == 0
    assert "one.files-mics: done (+1 ~0 -0 sent; 2 files written)" in out
    assert out.endswith("Apply complete! 1 destination applied.\n")
    assert run(workspace, "plan")[1] == (
        "No changes. The state matches the manifests (1 destination, 1 member).\n"
    )
    plan = json.loads(run(workspace, "plan", "--format", "json")[1])
    assert plan["summary"]["destinations"]["create"] == 0
    (workspace / "segments/one.yaml").write_text(one.replace("kind: Segment", "kind:   Segment"))
    code, _, err = run(workspace, "fmt", "--check")
    assert code == 1 and err.startswith("1 file to reformat: run `segops -C ")
