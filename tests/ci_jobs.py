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
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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


@dataclass
class GitLab:
    """The part of GitLab's REST API the recipe calls: notes, merge requests, artifacts."""

    token: str
    project: int = 42
    me: int = 99
    notes: list[dict[str, Any]] = field(default_factory=list)
    merged: dict[str, int] = field(default_factory=dict)  # merge commit -> merge request iid
    # pipeline id -> (merge request iid, id of its segops-plan job, that job's run)
    pipelines: dict[int, tuple[int, int, Job]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def add_pipeline(self, iid: int, plan: Job) -> None:
        number = len(self.pipelines) + 1
        self.pipelines[1000 + number] = (iid, 5000 + number, plan)

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.calls.append(f"{method} {path}")
        if path == "/api/v4/user":
            return 200, {"id": self.me}
        parts = path.removeprefix(f"/api/v4/projects/{self.project}/").split("/")
        if method == "GET" and parts[:2] == ["repository", "commits"]:
            iid = self.merged.get(parts[2])
            found = (
                [] if iid is None else [{"iid": iid, "state": "merged", "target_branch": "main"}]
            )
            return 200, found
        if parts[0] == "merge_requests" and parts[2:3] == ["notes"]:
            return self._notes(method, parts[3:], body)
        if parts[0] == "merge_requests" and parts[2:] == ["pipelines"]:
            ids = [p for p, (iid, _, _) in self.pipelines.items() if iid == int(parts[1])]
            return 200, [{"id": p} for p in sorted(ids, reverse=True)]  # newest first
        if parts[0] == "pipelines" and parts[2:] == ["jobs"]:
            _, job_id, _ = self.pipelines[int(parts[1])]
            return 200, [{"id": job_id, "name": "segops-plan"}]
        if parts[0] == "jobs" and parts[2:] == ["artifacts", "plan.segplan"]:
            for _, job_id, job in self.pipelines.values():
                if job_id == int(parts[1]) and "plan.segplan" in job.files:
                    return 200, job.files["plan.segplan"]
            return 404, {"message": "404 Not Found"}
        return 404, {"message": f"not played by the test: {method} {path}"}

    def _notes(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, self.notes
        if method == "POST":
            note = {"id": len(self.notes) + 1, "author": {"id": self.me}, "body": body["body"]}
            self.notes.append(note)
            return 201, note
        (note,) = [n for n in self.notes if n["id"] == int(rest[0])]
        assert note["author"]["id"] == self.me, "only our own note is updated"
        note["body"] = body["body"]
        return 200, note


@contextmanager
def gitlab_server(api: GitLab) -> Iterator[str]:
    """Serve `api` on 127.0.0.1; yield its CI_API_V4_URL."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            if self.headers.get("PRIVATE-TOKEN") != api.token:
                code, answer = 401, {"message": "401 Unauthorized"}
            else:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else None
                code, answer = api.answer(self.command, urlparse(self.path).path, body)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Next-Page", "")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v4"
    finally:
        server.shutdown()
        server.server_close()
