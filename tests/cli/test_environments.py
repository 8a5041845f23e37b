"""Environments (--env, SEGOPS_ENV), ${VAR} values in segops.yaml, external folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from segops.cli import app
from tests.conftest import write_tree

A = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11"
B = "f871a76fb7b15231306b634dd91b385c48e9298974308e28e161d845e3e6f060"

SEGOPS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
connections:
  mics:
    platform: mediarithmics
    token_env: SEGOPS_TEST_PROD_TOKEN
environments:
  dev:
    connections:
      mics: {platform: files, target: mediarithmics, path: out/dev}
    safety: {max_removal_fraction: 1.0}
  prod:
    safety: {max_removals: 10}
"""
MANIFEST = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: cart}
spec:
  source: {csv: {path: ../data/cart.csv}}
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: cart
      identifier: {kind: email_hash, format: sha256}
"""


def segops(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SEGOPS_ENV", "SEGOPS_TEST_PROD_TOKEN", "SEGOPS_TEST_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "ws"
    write_tree(
        root,
        {
            "segops.yaml": SEGOPS_YAML,
            "segments/cart.yaml": MANIFEST,
            "data/cart.csv": f"email_hash\n{A}\n",
        },
    )
    return root


def test_validate_checks_every_environment(ws: Path) -> None:
    code, out, err = segops(ws, "validate")
    assert code == 0, err
    assert out.splitlines() == [
        "Success! 1 segment and 1 destination are valid in environment dev.",
        "Success! 1 segment and 1 destination are valid in environment prod.",
    ]
    assert segops(ws, "--env", "prod", "validate")[1].endswith("in environment prod.\n")


def test_an_environment_must_be_chosen_and_known(ws: Path) -> None:
    code, _, err = segops(ws, "plan")
    assert code == 1
    assert "declares environments (dev, prod): choose one with --env NAME or SEGOPS_ENV" in err
    code, _, err = segops(ws, "--env", "staging", "plan")
    assert code == 1 and "--env staging: not one of dev, prod" in err
    (ws / "segops.yaml").write_text(SEGOPS_YAML.split("environments:")[0])
    code, _, err = segops(ws, "plan", "--env", "dev")
    assert code == 1 and "declares no environments: drop --env dev" in err


def test_each_environment_has_its_own_connections_state_and_safety(ws: Path) -> None:
    code, out, err = segops(ws, "--env", "dev", "apply", "--auto-approve")
    assert code == 0, err
    assert "cart.mics  (mediarithmics via mics)" in out and "2 files written" in out
    assert (ws / ".segops" / "dev" / "state.json").exists() and (ws / "out" / "dev").is_dir()
    # prod has its own state: nothing applied there yet
    code, out, _ = segops(ws, "plan", "--detailed-exitcode", env={"SEGOPS_ENV": "prod"})
    assert code == 2 and "+1  (0 → 1)" in out
    code, _, err = segops(ws, "--env", "prod", "apply", "--auto-approve")
    assert code == 1 and "SEGOPS_TEST_PROD_TOKEN (API token) is not set" in err
    assert not (ws / ".segops" / "prod").exists()
    # dev's own safety: the whole segment may go in dev
    (ws / "data/cart.csv").write_text(f"email_hash\n{B}\n")
    assert segops(ws, "--env", "dev", "plan")[0] == 0


def test_a_plan_made_for_one_environment_is_refused_in_another(ws: Path, tmp_path: Path) -> None:
    plan = str(tmp_path / "dev.segplan")
    assert segops(ws, "--env", "dev", "plan", "-out", plan)[0] == 0
    code, _, err = segops(ws, "--env", "prod", "apply", plan)
    assert code == 1
    assert "segops.yaml (environment dev) was removed" in err
    assert "segops.yaml (environment prod) was added" in err
    assert segops(ws, "--env", "dev", "apply", plan)[0] == 0


def test_two_environments_may_not_share_a_state(ws: Path) -> None:
    yaml = SEGOPS_YAML.replace(
        "    safety: {max_removals: 10}", "    state: {backend: local, path: .segops/dev}"
    )
    (ws / "segops.yaml").write_text(yaml)
    code, _, err = segops(ws, "--env", "dev", "plan")
    assert code == 1
    assert "environments.prod.state: uses the state of environment dev (.segops/dev)" in err


VARIABLES = """\
version: 1
manifests: ["segments/*.yaml"]
state: {backend: local, path: "${SEGOPS_TEST_STATE:-.segops}"}
connections:
  mics:
    platform: files
    target: mediarithmics
    path: "out/${SEGOPS_TEST_OUT}"
"""


def test_variables_in_segops_yaml(ws: Path, tmp_path: Path) -> None:
    (ws / "segops.yaml").write_text(VARIABLES)
    code, _, err = segops(ws, "plan")
    assert code == 1
    assert (
        "segops.yaml:8: connections.mics.path: ${SEGOPS_TEST_OUT}: SEGOPS_TEST_OUT is not set"
        in err
    )
    env = {"SEGOPS_TEST_OUT": "weekly"}
    code, out, err = segops(ws, "apply", "--auto-approve", env=env)
    assert code == 0, err
    assert (ws / "out" / "weekly").is_dir() and (ws / ".segops" / "state.json").exists()
    plan = str(tmp_path / "p.segplan")
    (ws / "data/cart.csv").write_text(f"email_hash\n{A}\n{B}\n")
    assert segops(ws, "plan", "-out", plan, env=env)[0] == 0
    code, _, err = segops(ws, "apply", plan, env={"SEGOPS_TEST_OUT": "daily"})
    assert code == 1 and "segops.yaml (${} values) changed" in err


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("${MICS_API_TOKEN}", "secrets are never written into segops.yaml"),
        ("${1BAD}", "`${` starts no `${NAME}`"),
    ],
)
def test_variables_that_are_refused(ws: Path, value: str, said: str) -> None:
    (ws / "segops.yaml").write_text(VARIABLES.replace("out/${SEGOPS_TEST_OUT}", value))
    code, _, err = segops(ws, "plan", env={"MICS_API_TOKEN": "abcdefgh123"})
    assert code == 1 and said in err and "abcdefgh123" not in err


def test_a_variable_never_names_a_secret_variable(ws: Path) -> None:
    yaml = SEGOPS_YAML.replace("token_env: SEGOPS_TEST_PROD_TOKEN", "token_env: ${WHICH}")
    (ws / "segops.yaml").write_text(yaml)
    code, _, err = segops(ws, "--env", "dev", "plan", env={"WHICH": "X"})
    assert code == 1 and "this key names an environment variable already" in err


def test_a_dollar_brace_can_be_written(ws: Path) -> None:
    (ws / "segops.yaml").write_text(VARIABLES.replace("out/${SEGOPS_TEST_OUT}", "out/$${literal}"))
    assert segops(ws, "apply", "--auto-approve")[0] == 0
    assert (ws / "out" / "${literal}").is_dir()


SHARED_YAML = """\
version: 1
manifests: ["../shared/segments/*.yaml"]
external_folders: ["../shared"]
connections:
  mics: {platform: files, target: mediarithmics, path: out}
"""


def test_manifests_and_data_in_a_declared_folder_outside_the_workspace(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    write_tree(shared, {"segments/cart.yaml": MANIFEST, "data/cart.csv": f"email_hash\n{A}\n"})
    for team in ("team-a", "team-b"):
        write_tree(tmp_path / team, {"segops.yaml": SHARED_YAML})
        code, out, err = segops(tmp_path / team, "apply", "--auto-approve")
        assert code == 0, err
    code, out, _ = segops(tmp_path / "team-a", "plan", "--format", "json")
    assert '"path": "../shared/segments/cart.yaml"' in out
    (tmp_path / "team-a" / "segops.yaml").write_text(
        SHARED_YAML.replace('external_folders: ["../shared"]\n', "")
    )
    code, _, err = segops(tmp_path / "team-a", "plan")
    assert code == 1 and "list its folder in external_folders" in err
    (tmp_path / "team-a" / "segops.yaml").write_text(
        SHARED_YAML.replace('["../shared"]', '["../elsewhere"]')
    )
    code, _, err = segops(tmp_path / "team-a", "plan")
    assert code == 1 and "external_folders[0]: ../elsewhere: not a folder" in err
