"""The part of GitLab's REST API the GitLab CI recipe calls, served on 127.0.0.1 for tests.

Notes of a merge request, the merge requests of a commit, a merge request's pipelines and
their jobs, and a job's artifact file; each call needs the project access token.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from tests.ci_jobs import Job


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
