"""Run the jobs of the CI recipes as their runners would, on this machine.

`World` is what outlives a job: the repository, the bucket (source data, and the state,
which stands in for S3: a local state folder copied into each fresh checkout and back),
and the artifacts. Each job starts from an empty folder with a fresh checkout, gets the
environment its recipe sets (secrets, role ARNs and OIDC tokens as fake values), and runs
its shell steps with bash. Steps that are actions (checkout, artifacts, AWS credentials)
are played by the harness; an expression or condition it does not know fails the test,
so the recipes cannot drift from what is run here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent  # the virtual environment that holds `segops`
PIP_INSTALL = re.compile(r'pip install (--quiet )?"git\+\$\{?SEGOPS_REPO\}?@\$\{?SEGOPS_COMMIT\}?"')
FAKE_AWS = {  # what configure-aws-credentials exports, or boto3 gets from the OIDC exchange
    "AWS_ACCESS_KEY_ID": "ASIAFAKEFAKEFAKEFAKE",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-access-key",
    "AWS_SESSION_TOKEN": "fake-session-token",
}


@dataclass
class Step:
    name: str
    code: int
    stdout: str
    stderr: str


@dataclass
class Job:
    """One job run: its steps, in order; a failed step ends the job."""

    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # artifacts it kept
    temp: Path | None = None  # GitHub: the runner's RUNNER_TEMP, kept for inspection

    @property
    def code(self) -> int:
        return next((s.code for s in self.steps if s.code), 0)

    def step(self, name: str) -> Step:
        (found,) = [s for s in self.steps if s.name == name]
        return found


class World:
    """The repository (main and branches), the bucket and the artifacts CI jobs share."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo, self.bucket = root / "repo", root / "bucket"  # repo: the main branch
        self.artifacts: dict[str, bytes] = {}  # GitHub: artifact name -> plan file
        self.jobs = 0
        for folder in (self.repo, self.bucket / "data", self.bucket / "state"):
            folder.mkdir(parents=True)

    def branch(self, name: str) -> Path:
        """Return the tree of branch `name`, made from main when it is new."""
        tree = self.root / "branches" / name
        if not tree.exists():
            shutil.copytree(self.repo, tree)
        return tree

    def merge(self, name: str) -> None:
        """Merge branch `name` into main (its tree becomes main's)."""
        shutil.rmtree(self.repo)
        shutil.copytree(self.branch(name), self.repo)

    def write(self, where: Path, files: Mapping[str, str]) -> None:
        for name, text in files.items():
            path = where / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    @contextmanager
    def runner(self, ref: str = "main") -> Iterator[tuple[Path, Path]]:
        """Give a fresh runner: (checkout of `ref`, temp folder); the state goes back after."""
        self.jobs += 1
        machine = self.root / f"runner-{self.jobs}"
        checkout = machine / "checkout"
        shutil.copytree(self.repo if ref == "main" else self.branch(ref), checkout)
        shutil.copytree(self.bucket / "data", checkout / "data")
        shutil.copytree(self.bucket / "state", checkout / ".segops")
        (machine / "temp").mkdir()
        try:
            yield checkout, machine / "temp"
        finally:
            shutil.rmtree(self.bucket / "state")
            shutil.copytree(checkout / ".segops", self.bucket / "state")


def bash(script: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def base_env(temp: Path) -> dict[str, str]:
    return {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(temp), "CI": "true"}


# -- GitHub Actions -------------------------------------------------------------------------

_EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
_CONTAINS = re.compile(r"contains\(fromJSON\('(\[.*?\])'\), steps\.(\w+)\.outputs\.(\w+)\)")


def github_job(
    workflow: Any,
    name: str,
    world: World,
    event: str,
    context: Mapping[str, str],
    ref: str = "main",
) -> Job:
    """Run job `name` of `workflow` for `event` on `ref`; `context`: the expressions' values."""
    job, run = workflow["jobs"][name], Job()
    with world.runner(ref) as (checkout, temp):
        run.temp = temp
        values = {**context, "runner.temp": str(temp), "github.event_name": event}
        env = {**base_env(temp), "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(checkout)}
        env |= {k: _expand(str(v), values) for k, v in workflow.get("env", {}).items()}
        env |= {k: _expand(str(v), values) for k, v in job.get("env", {}).items()}
        values |= {f"env.{k}": v for k, v in env.items()}
        for step in job["steps"]:
            if not _github_step(step, run, world, env, values, checkout, temp):
                break
    return run


def _github_step(
    step: Any,
    run: Job,
    world: World,
    env: dict[str, str],
    values: dict[str, str],
    checkout: Path,
    temp: Path,
) -> bool:
    """Play or run one step; return whether the job goes on."""
    uses, name = step.get("uses", ""), step.get("name", step.get("uses", ""))
    for step_id, found in run.outputs.items():  # outputs of earlier steps
        values |= {f"steps.{step_id}.outputs.{k}": v for k, v in found.items()}
    if "if" in step and not uses.startswith("actions/github-script@"):
        if not _condition(step["if"], values):
            return True
    given = {k: _expand(str(v), values) for k, v in step.get("with", {}).items()}
    if uses.startswith(("actions/checkout@", "actions/setup-python@")):
        return True  # the runner is checked out, and this Python runs segops
    if uses.startswith("aws-actions/configure-aws-credentials@"):
        assert given["role-to-assume"].startswith("arn:aws:iam::"), given
        env |= {**FAKE_AWS, "AWS_REGION": given["aws-region"]}
        env["AWS_DEFAULT_REGION"] = given["aws-region"]
        return True
    if uses.startswith("actions/upload-artifact@"):
        world.artifacts[given["name"]] = Path(given["path"]).read_bytes()
        return True
    if uses.startswith("actions/download-artifact@"):
        target = Path(given["path"]) / "plan.segplan"
        target.write_bytes(world.artifacts[given["name"]])
        return True
    if uses.startswith("actions/github-script@"):
        # JavaScript: the comment (its text checked from plan.md) and the artifact lookup
        # (its script checked in test_recipes.py), played with what they would find.
        if step.get("id") == "find":
            run.outputs["find"] = {"name": values["pr.artifact"], "run-id": "1"}
        return True
    script = step["run"]
    if PIP_INSTALL.search(script):
        return True  # installs segops from its repository; this test runs the checkout's
    step_env = {**env, **{k: _expand(str(v), values) for k, v in step.get("env", {}).items()}}
    output = temp / f"output-{len(run.steps)}"
    output.touch()
    step_env["GITHUB_OUTPUT"] = str(output)
    done = bash(script, step_env, checkout)
    run.steps.append(Step(name, done.returncode, done.stdout, done.stderr))
    if "id" in step:
        lines = output.read_text().splitlines()
        run.outputs[step["id"]] = dict(line.split("=", 1) for line in lines if "=" in line)
    return done.returncode == 0


def _expand(text: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise AssertionError(f"the harness does not know the expression {key!r}")
        return values[key]

    return _EXPRESSION.sub(one, text)


def _condition(text: str, values: Mapping[str, str]) -> bool:
    found = _CONTAINS.fullmatch(text.strip())
    assert found, f"the harness does not know the condition {text!r}"
    listed, step_id, output = found.groups()
    return values.get(f"steps.{step_id}.outputs.{output}", "") in json.loads(listed)


# -- GitLab CI ------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def gitlab_job(
    pipeline: Any, name: str, world: World, ci: Mapping[str, str], ref: str = "main"
) -> Job:
    """Run job `name` of the GitLab `pipeline` on `ref` with the predefined variables `ci`."""
    job, run = pipeline[name], Job()
    with world.runner(ref) as (checkout, temp):
        env = {**base_env(temp), **ci, "CI_PROJECT_DIR": str(checkout)}
        for variables in (pipeline.get("variables", {}), job.get("variables", {})):
            for key, value in variables.items():  # GitLab expands $NAME in values
                env[key] = _VARIABLE.sub(lambda m: env.get(m.group(1), ""), str(value))
        for token in job.get("id_tokens", {}):
            env[token] = "fake.oidc.jwt"
        lines = []
        for line in [*pipeline["default"]["before_script"], *job["script"]]:
            if PIP_INSTALL.search(line):
                continue  # installs segops from its repository; this test runs the checkout's
            lines.append(line)
        done = bash("\n".join(lines), env, checkout)
        run.steps.append(Step(name, done.returncode, done.stdout, done.stderr))
        artifacts = job.get("artifacts", {})
        if artifacts and (done.returncode == 0 or artifacts.get("when") == "always"):
            for path in artifacts["paths"]:
                if (checkout / path).is_file():
                    run.files[path] = (checkout / path).read_bytes()
    return run
