"""The CI recipes' jobs, run in order as CI would run them, on fresh runners.

Every job starts from an empty folder: a checkout of the repository, the source data of
the bucket, and the state (local, standing in for S3), which goes back to the bucket when
the job ends. The workflow's segops command lines run with bash, with the environment the
job sets (fake secrets, role ARNs and tokens); the plan file travels from the pull-request
job to the merge job as an artifact. Each scenario: a plan on the pull request, a data
refresh, the merge job applying the reviewed plan on the new data, then scheduled syncs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from segops.config.documents import load_documents
from segops.state.local import LocalStateStore
from tests.ci_jobs import World, github_job, gitlab_job
from tests.conftest import SEGOPS_YAML, mics_manifest
from tests.gitlab_api import GitLab, gitlab_server

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- segops-plan -->"
HASHES = [hashlib.sha256(f"user{i}@example.com".encode()).hexdigest() for i in range(60)]


def load(path: Path) -> Any:
    (document,) = load_documents(path.read_bytes(), path.name)
    return document.data


def members(count: int, start: int = 0) -> str:
    return "email_hash\n" + "".join(f"{h}\n" for h in HASHES[start : start + count])


def workspace(world: World) -> None:
    """The repository: two segments; the bucket: their source data, 20 and 10 members."""
    manifests = {
        f"segments/{name}.yaml": mics_manifest(name, f"csv: {{path: ../data/{name}.csv}}")
        for name in ("cart", "vip")
    }
    world.write(world.repo, {"segops.yaml": SEGOPS_YAML, **manifests})
    world.write(world.bucket, {"data/cart.csv": members(20), "data/vip.csv": members(10, 40)})


def applied(world: World) -> tuple[int, dict[str, int]]:
    state = LocalStateStore(world.bucket / "state").read()
    assert state is not None
    return state.serial, {d.address: d.snapshot.count for d in state.destinations}


# -- GitHub Actions -------------------------------------------------------------------------

SECRETS = ("MICS_API_TOKEN", "MOE_WORKSPACE_ID", "MOE_API_KEY")


def github_context(head: str) -> dict[str, str]:
    """The values of the workflow's expressions, as GitHub would give them (fake)."""
    return {
        "github.event.pull_request.head.sha": head,
        "github.server_url": "https://github.com",
        "github.repository": "acme/segments",
        "github.run_id": "123",
        "github.token": "fake-github-token",
        "vars.SEGOPS_PLAN_ROLE_ARN": "arn:aws:iam::123456789012:role/segops-plan",
        "vars.SEGOPS_APPLY_ROLE_ARN": "arn:aws:iam::123456789012:role/segops-apply",
        "pr.artifact": f"segops-plan-{head}",  # what the lookup script finds for the merge
        **{f"secrets.{name}": f"fake-{name.lower()}" for name in SECRETS},
    }


@pytest.fixture(scope="module")
def workflow() -> Any:
    return load(REPO / "recipes" / "github-actions" / "segops.yml")


def test_github_plan_merge_and_nightly_sync(workflow: Any, tmp_path: Path) -> None:
    world = World(tmp_path)
    workspace(world)
    head = "a" * 40
    context = github_context(head)

    pr = github_job(workflow, "plan", world, "pull_request", context)
    assert pr.code == 0, pr.steps
    assert [s.name for s in pr.steps] == ["Validate", "Plan"]  # the fail step did not run
    assert pr.outputs["plan"]["exitcode"] == "2"  # changes
    assert pr.temp is not None
    comment = (pr.temp / "plan.md").read_text()
    assert comment.startswith(MARKER) and f"`segops-plan-{head}` in [this run]" in comment
    assert HASHES[0] not in comment  # counts, never identifiers
    assert f"segops-plan-{head}" in world.artifacts

    world.write(world.bucket, {"data/cart.csv": members(25)})  # the export refreshed
    merge = github_job(workflow, "apply", world, "push", context)
    assert merge.code == 0, merge.steps
    out = merge.step("Apply the reviewed plan").stdout
    assert "cart.files-mics: data changed since review: +25 ~0 -0 (reviewed +20 ~0 -0)" in out
    assert "vip.files-mics: done (+10 ~0 -0 sent" in out
    assert applied(world)[1] == {"cart.files-mics": 25, "vip.files-mics": 10}

    world.write(world.bucket, {"data/cart.csv": members(24, 2), "data/vip.csv": members(12, 40)})
    nightly = github_job(workflow, "sync", world, "schedule", context)
    assert nightly.code == 0, nightly.steps
    assert "Apply complete! 2 destinations applied." in nightly.step("Sync data refreshes").stdout
    serial, counts = applied(world)
    assert counts == {"cart.files-mics": 24, "vip.files-mics": 12}

    world.write(world.bucket, {"data/cart.csv": members(5, 2)})  # a broken export
    broken = github_job(workflow, "sync", world, "schedule", context)
    assert broken.code == 3  # the job fails; nothing was sent
    assert "19 of 24 members (79%) would be removed" in broken.step("Sync data refreshes").stderr
    assert applied(world) == (serial, counts)


def test_github_a_plan_the_sync_made_stale_is_refused_then_planned_again(
    workflow: Any, tmp_path: Path
) -> None:
    world = World(tmp_path)
    workspace(world)
    context = github_context("b" * 40)
    assert github_job(workflow, "sync", world, "schedule", context).code == 0
    new = mics_manifest("new", "csv: {path: ../data/vip.csv}")
    world.write(world.branch("new"), {"segments/new.yaml": new})
    assert github_job(workflow, "plan", world, "pull_request", context, "new").code == 0
    world.write(world.bucket, {"data/vip.csv": members(11, 40)})
    assert github_job(workflow, "sync", world, "schedule", context).code == 0  # state moved
    assert "new.files-mics" not in applied(world)[1]  # main does not have it yet

    world.merge("new")
    merge = github_job(workflow, "apply", world, "push", context)
    assert merge.code == 1
    assert "the saved plan is stale" in merge.step("Apply the reviewed plan").stderr
    assert applied(world)[1].get("new.files-mics") is None

    assert github_job(workflow, "plan", world, "pull_request", context, "new").code == 0  # rerun
    merge = github_job(workflow, "apply", world, "push", context)
    assert merge.code == 0, merge.steps
    assert applied(world)[1]["new.files-mics"] == 11


def test_github_a_tripped_guard_keeps_the_plan_and_fails_the_pull_request(
    workflow: Any, tmp_path: Path
) -> None:
    world = World(tmp_path)
    workspace(world)
    context = github_context("c" * 40)
    assert github_job(workflow, "sync", world, "schedule", context).code == 0
    world.write(world.bucket, {"data/cart.csv": members(5)})
    pr = github_job(workflow, "plan", world, "pull_request", context)
    assert pr.outputs["plan"]["exitcode"] == "3"
    assert pr.code == 1  # the last step fails the job, after the plan was kept
    assert pr.steps[-1].name == "Fail on an error or a tripped safety guard"
    assert "c" * 40 in " ".join(world.artifacts)
    before = applied(world)
    merge = github_job(workflow, "apply", world, "push", context)
    assert merge.code == 3  # apply refuses it: only an operator's --allow-removals passes
    assert applied(world) == before


# -- GitLab CI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return load(REPO / "recipes" / "gitlab-ci" / "segops.gitlab-ci.yml")


def gitlab_ci(api_url: str, source: str, sha: str) -> dict[str, str]:
    """GitLab's predefined variables and the project's CI/CD variables (fake values)."""
    return {
        "CI_API_V4_URL": api_url,
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "7",
        "CI_COMMIT_SHA": sha,
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_BRANCH": "main",
        "CI_PIPELINE_SOURCE": source,
        "CI_JOB_ID": "5001",
        "CI_JOB_URL": "https://gitlab.example.com/acme/segments/-/jobs/5001",
        "SEGOPS_GITLAB_TOKEN": "fake-gitlab-token",
        "SEGOPS_PLAN_ROLE_ARN": "arn:aws:iam::123456789012:role/segops-plan",
        "SEGOPS_APPLY_ROLE_ARN": "arn:aws:iam::123456789012:role/segops-apply",
        **{name: f"fake-{name.lower()}" for name in SECRETS},
    }


def test_gitlab_plan_note_merge_and_scheduled_sync(pipeline: Any, tmp_path: Path) -> None:
    world = World(tmp_path)
    workspace(world)
    api = GitLab(token="fake-gitlab-token")
    api.notes.append({"id": 1, "author": {"id": 5}, "body": f"{MARKER} quoted by someone"})
    with gitlab_server(api) as url:
        mr = gitlab_job(
            pipeline, "segops-plan", world, gitlab_ci(url, "merge_request_event", "d" * 40)
        )
        assert mr.code == 0, mr.steps
        api.add_pipeline(7, mr)
        assert set(mr.files) == {"plan.segplan", "plan.md"}
        ours = [n for n in api.notes if n["author"]["id"] == api.me]
        assert len(ours) == 1 and ours[0]["body"].startswith(MARKER)
        assert "2 to create" in ours[0]["body"] and HASHES[0] not in ours[0]["body"]
        assert "`plan.segplan` of [job 5001](https://gitlab.example.com/" in ours[0]["body"]

        world.write(world.bucket, {"data/vip.csv": members(11, 40)})  # pushed again: replanned
        mr = gitlab_job(
            pipeline, "segops-plan", world, gitlab_ci(url, "merge_request_event", "e" * 40)
        )
        assert mr.code == 0, mr.steps
        api.add_pipeline(7, mr)
        assert len([n for n in api.notes if n["author"]["id"] == api.me]) == 1  # updated
        assert api.notes[0]["body"] == f"{MARKER} quoted by someone"  # not ours: untouched

        world.write(world.bucket, {"data/cart.csv": members(22)})  # the export refreshed
        api.merged["f" * 40] = 7
        merge = gitlab_job(pipeline, "segops-apply", world, gitlab_ci(url, "push", "f" * 40))
        assert merge.code == 0, merge.steps
        out = merge.steps[0].stdout
        assert "the plan of merge request !7, pipeline 1002, job 5002" in out  # the newest
        assert "cart.files-mics: data changed since review: +22 ~0 -0 (reviewed +20 ~0 -0)" in out
        assert applied(world)[1] == {"cart.files-mics": 22, "vip.files-mics": 11}

        world.write(world.bucket, {"data/vip.csv": members(12, 40)})
        sync = gitlab_job(pipeline, "segops-sync", world, gitlab_ci(url, "schedule", "f" * 40))
        assert sync.code == 0, sync.steps
        before = applied(world)
        assert before[1] == {"cart.files-mics": 22, "vip.files-mics": 12}

        world.write(world.bucket, {"data/vip.csv": members(0)})  # an empty export
        sync = gitlab_job(pipeline, "segops-sync", world, gitlab_ci(url, "schedule", "f" * 40))
        assert sync.code == 3 and "the source is empty" in sync.steps[0].stderr
        assert applied(world) == before


def test_gitlab_a_failed_plan_is_noted_and_never_applied(pipeline: Any, tmp_path: Path) -> None:
    world = World(tmp_path)
    workspace(world)
    world.write(world.repo, {"segments/vip.yaml": "kind: Segment\nspec: {}\n"})  # invalid
    api = GitLab(token="fake-gitlab-token")
    with gitlab_server(api) as url:
        mr = gitlab_job(
            pipeline, "segops-plan", world, gitlab_ci(url, "merge_request_event", "1" * 40)
        )
        assert mr.code == 1
        assert "segops exited validate" in mr.steps[0].stderr
        api.add_pipeline(7, mr)
        (note,) = api.notes
        assert note["body"].startswith(f"{MARKER}\n### segops validate failed")
        assert "segments/vip.yaml" in note["body"]
        assert "plan.segplan" not in mr.files

        api.merged["2" * 40] = 7
        merge = gitlab_job(pipeline, "segops-apply", world, gitlab_ci(url, "push", "2" * 40))
        assert merge.code == 1
        assert "merge request !7 has no saved plan" in merge.steps[0].stderr
        unknown = gitlab_job(pipeline, "segops-apply", world, gitlab_ci(url, "push", "3" * 40))
        assert unknown.code == 1 and "merged no merge request" in unknown.steps[0].stderr
    assert not (world.bucket / "state" / "state.json").exists()


def test_the_scenarios_run_every_job_of_both_recipes(workflow: Any, pipeline: Any) -> None:
    """A job added to a recipe must get a scenario here."""
    assert set(workflow["jobs"]) == {"plan", "apply", "sync"}
    jobs = {k for k, v in pipeline.items() if isinstance(v, dict) and "script" in v}
    assert jobs == {"segops-plan", "segops-apply", "segops-sync"}
    for job in workflow["jobs"].values():  # each job runs segops in a shell step
        assert any("segops -C" in s.get("run", "") for s in job["steps"])
    for name in jobs:
        assert any("segops -C" in line for line in pipeline[name]["script"])
