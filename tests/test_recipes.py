"""The CI recipes users copy: their structure (GitHub Actions, GitLab CI) and pre-commit hooks.

tests/test_recipe_runs.py runs the recipes' jobs; this file checks what a run cannot see:
triggers, permissions, where secrets and credentials go, how segops is installed.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segops.config.documents import load_documents
from tests.conftest import run

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "recipes" / "github-actions" / "segops.yml"
GITLAB = REPO / "recipes" / "gitlab-ci" / "segops.gitlab-ci.yml"
INSTALL = 'pip install "git+$SEGOPS_REPO@$SEGOPS_COMMIT"'
HOOKS = REPO / ".pre-commit-hooks.yaml"
MARKER = "<!-- segops-plan -->"


def load(path: Path) -> Any:
    # segops' own loader: PyYAML would read the workflow's `on:` key as True
    (document,) = load_documents(path.read_bytes(), path.name)
    return document.data


def same_path(text: str) -> str:
    """Return `text` with the runner's temp folder spelled one way (shell and expression)."""
    return text.replace("${{ runner.temp }}", "$RUNNER_TEMP").replace('"', "")


def segops_commands(script: str) -> list[list[str]]:
    """Return the segops command lines of a shell script, continuation lines joined."""
    joined = script.replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in joined.splitlines() if "segops -C" in line]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def workflow() -> Any:
    return load(WORKFLOW)


def step(job: Any, uses: str = "", name: str = "") -> Any:
    (found,) = [
        s
        for s in job["steps"]
        if (uses and s.get("uses", "").startswith(uses)) or (name and s.get("name") == name)
    ]
    return found


def plan_argv(workflow: Any) -> list[str]:
    (argv,) = segops_commands(step(workflow["jobs"]["plan"], name="Plan")["run"])
    return argv


def test_pull_requests_are_planned_merges_applied_and_data_synced(workflow: Any) -> None:
    assert set(workflow["on"]) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["on"]["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]  # daily
    plan, apply, sync = (workflow["jobs"][name] for name in ("plan", "apply", "sync"))
    assert "github.event_name == 'pull_request'" in plan["if"]
    assert "head.repo.full_name == github.repository" in plan["if"]  # no forks
    assert apply["if"] == "github.event_name == 'push'"
    assert sync["if"] == (
        "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'"
    )
    assert step(plan, uses="actions/checkout@")["with"]["fetch-depth"] == 0
    for job in (plan, apply, sync):
        assert job["runs-on"] == "ubuntu-latest"  # GitHub-hosted: nothing kept between jobs
        assert "clean" not in step(job, uses="actions/checkout@").get("with", {})
        step(job, uses="actions/setup-python@")
        assert step(job, name="Install segops")["run"] == INSTALL
    assert workflow["env"]["SEGOPS_COMMIT"] == "COMMIT_SHA"  # a commit to pin, not a tag
    (argv,) = segops_commands(step(sync, name="Sync data refreshes")["run"])
    assert argv[3:] == ["apply", "--auto-approve"]  # behind the guards: no override


def test_state_credentials_come_from_oidc_roles(workflow: Any) -> None:
    roles = {"plan": "SEGOPS_PLAN_ROLE_ARN", "apply": "SEGOPS_APPLY_ROLE_ARN"}
    for name, job in workflow["jobs"].items():
        assert job["permissions"]["id-token"] == "write", name
        aws = step(job, uses="aws-actions/configure-aws-credentials@")
        names = [s.get("name") for s in job["steps"]]
        first_segops = min(i for i, s in enumerate(job["steps"]) if "segops -C" in s.get("run", ""))
        assert names.index(aws["name"]) < first_segops  # credentials before any segops
        role = roles.get(name, roles["apply"])
        assert aws["with"]["role-to-assume"] == f"${{{{ vars.{role} }}}}"
        assert aws["with"]["aws-region"] == "${{ env.AWS_REGION }}"
    text = WORKFLOW.read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "aws-access-key-id" not in text


def test_apply_and_sync_queue_behind_each_other(workflow: Any) -> None:
    for name in ("apply", "sync"):
        concurrency = workflow["jobs"][name]["concurrency"]
        assert concurrency == {"group": "segops-state", "cancel-in-progress": False}


def test_validate_then_plan_with_a_saved_markdown_plan(workflow: Any) -> None:
    plan_job = workflow["jobs"]["plan"]
    names = [s.get("name") for s in plan_job["steps"]]
    assert names.index("Validate") < names.index("Plan")
    (validate,) = segops_commands(step(plan_job, name="Validate")["run"])
    assert validate[3] == "validate"
    argv = plan_argv(workflow)
    assert argv[3] == "plan"
    assert option(argv, "-out").endswith("plan.segplan")
    assert option(argv, "--format") == "markdown"
    assert "--detailed-exitcode" in argv
    assert option(argv, ">").endswith("plan.md")  # the comment: plan's stdout, to a file


def test_exit_codes_2_continues_1_and_3_fail(workflow: Any) -> None:
    plan_job = workflow["jobs"]["plan"]
    script = step(plan_job, name="Plan")["run"]
    assert "set +e" in script and 'echo "exitcode=$code" >> "$GITHUB_OUTPUT"' in script
    fail = step(plan_job, name="Fail on an error or a tripped safety guard")
    codes = set(re.findall(r'"(\d)"', fail["if"]))
    assert codes == {"1", "3"} and "exit 1" in fail["run"]
    upload = step(plan_job, uses="actions/upload-artifact@")
    assert set(re.findall(r'"(\d)"', upload["if"])) == {"0", "2", "3"}
    comment = step(plan_job, uses="actions/github-script@")
    assert comment["if"].startswith("always()")  # guard trips (3) and errors are shown too


def test_the_plan_file_is_kept_as_an_artifact(workflow: Any) -> None:
    upload = step(workflow["jobs"]["plan"], uses="actions/upload-artifact@")["with"]
    assert same_path(upload["path"]) == same_path(option(plan_argv(workflow), "-out"))
    assert upload["name"] == "segops-plan-${{ github.event.pull_request.head.sha }}"
    assert upload["if-no-files-found"] == "error"


def test_one_sticky_comment_found_by_its_marker(workflow: Any) -> None:
    plan_job = workflow["jobs"]["plan"]
    assert plan_job["permissions"]["pull-requests"] == "write"
    script = step(plan_job, uses="actions/github-script@")["with"]["script"]
    assert f"const marker = '{MARKER}';" in script
    assert "c.body.includes(marker)" in script
    assert "issues.listComments" in script and "github.paginate" in script
    assert script.index("updateComment") < script.index("createComment")  # update, else create
    plan_md = Path(same_path(option(plan_argv(workflow), ">"))).name
    assert f"`${{dir}}/{plan_md}`" in script


def test_merge_applies_the_plan_of_the_merged_pull_request(workflow: Any) -> None:
    apply_job = workflow["jobs"]["apply"]
    assert apply_job["permissions"]["actions"] == "read"
    find = step(apply_job, name="Find the plan of the merged pull request")
    assert "listPullRequestsAssociatedWithCommit" in find["with"]["script"]
    assert "`segops-plan-${pr.head.sha}`" in find["with"]["script"]  # the name plan uploads
    download = step(apply_job, uses="actions/download-artifact@")["with"]
    assert download["name"] == "${{ steps.find.outputs.name }}"
    assert download["run-id"] == "${{ steps.find.outputs.run-id }}"
    (argv,) = segops_commands(step(apply_job, name="Apply the reviewed plan")["run"])
    assert argv[3] == "apply" and len(argv) == 5
    saved = Path(same_path(option(plan_argv(workflow), "-out")))
    assert Path(same_path(argv[4])) == Path(same_path(download["path"])) / saved.name
    assert all(not s.get("uses", "").startswith("dawidd6/") for s in apply_job["steps"])


def walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


def test_secrets_reach_apply_only_through_env(workflow: Any) -> None:
    uses = [(path, text) for path, text in walk(workflow) if "secrets." in text]
    assert uses, "the recipe passes the platform credentials"
    for path, text in uses:
        assert path[:2] in {("jobs", "apply"), ("jobs", "sync")}, path
        assert path[2] == "steps" and path[-2] == "env", path
        assert re.fullmatch(r"\$\{\{ secrets\.[A-Z_]+ \}\}", text), text
    for job, name in (("apply", "Apply the reviewed plan"), ("sync", "Sync data refreshes")):
        env = step(workflow["jobs"][job], name=name)["env"]
        assert set(env) >= {"MICS_API_TOKEN", "MOE_API_KEY", "MOE_WORKSPACE_ID"}
    assert workflow["permissions"] == {"contents": "read"}


# -- GitLab CI -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gitlab() -> Any:
    return load(GITLAB)


def rules(job: Any) -> list[str]:
    return [rule["if"] for rule in job["rules"]]


def test_gitlab_merge_requests_planned_default_branch_applied_schedules_synced(
    gitlab: Any,
) -> None:
    plan, apply, sync = gitlab["segops-plan"], gitlab["segops-apply"], gitlab["segops-sync"]
    assert rules(plan) == ['$CI_PIPELINE_SOURCE == "merge_request_event"']
    assert rules(apply) == [
        '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE == "push"'
    ]
    assert rules(sync) == ['$CI_PIPELINE_SOURCE == "schedule"']
    assert {r["if"] for r in gitlab["workflow"]["rules"]} >= {*rules(plan), *rules(apply)}
    assert apply["resource_group"] == sync["resource_group"] == "segops-state"
    assert sync["script"] == ['segops -C "$SEGOPS_DIR" apply --auto-approve']
    assert apply["script"][-1] == 'segops -C "$SEGOPS_DIR" apply plan.segplan'
    artifacts = plan["artifacts"]
    assert artifacts["paths"] == ["plan.segplan", "plan.md"] and artifacts["when"] == "always"
    assert artifacts["access"] == "developer"  # the plan file holds member identifiers
    assert MARKER in plan["script"][1]


def test_gitlab_installs_segops_from_its_repository_and_assumes_roles(gitlab: Any) -> None:
    before = gitlab["default"]["before_script"]
    assert before[0] == 'pip install --quiet "git+${SEGOPS_REPO}@${SEGOPS_COMMIT}"'
    assert gitlab["variables"]["SEGOPS_COMMIT"] == "COMMIT_SHA"
    assert 'printf \'%s\' "$SEGOPS_ID_TOKEN" > "$AWS_WEB_IDENTITY_TOKEN_FILE"' in before
    roles = {"segops-plan": "$SEGOPS_PLAN_ROLE_ARN"}
    for name in ("segops-plan", "segops-apply", "segops-sync"):
        job = gitlab[name]
        assert job["id_tokens"] == {"SEGOPS_ID_TOKEN": {"aud": "sts.amazonaws.com"}}
        assert job["variables"]["AWS_ROLE_ARN"] == roles.get(name, "$SEGOPS_APPLY_ROLE_ARN")
    text = GITLAB.read_text()
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text


# -- pre-commit ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hooks() -> dict[str, Any]:
    return {hook["id"]: hook for hook in load(HOOKS)}


def test_hooks(hooks: dict[str, Any]) -> None:
    assert set(hooks) == {"segops-validate", "segops-fmt"}
    assert hooks["segops-validate"]["entry"] == "segops validate"
    assert hooks["segops-fmt"]["entry"] == "segops fmt --check"
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False  # the workspace globs decide, not pre-commit


@pytest.mark.parametrize(
    ("name", "validate", "fmt"),
    [
        ("segments/a.yaml", True, True),
        ("segops.yml", True, True),
        ("data/a.csv", True, False),
        ("data/a.ndjson", True, False),
        ("data/a.parquet", True, False),
        ("README.md", False, False),
        ("data/a.yaml.bak", False, False),
    ],
)
def test_hook_triggers(hooks: dict[str, Any], name: str, validate: bool, fmt: bool) -> None:
    assert bool(re.search(hooks["segops-validate"]["files"], name)) is validate
    assert bool(re.search(hooks["segops-fmt"]["files"], name)) is fmt


def test_hook_entries_are_commands(hooks: dict[str, Any], tmp_path: Path) -> None:
    for hook in hooks.values():
        code, out, _ = run(tmp_path, *hook["entry"].split()[1:], "--help")
        assert code == 0 and "Usage: " in out
