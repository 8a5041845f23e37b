"""Workspaces whose sources are on the test servers: objects on S3, query results."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from tests.conftest import write_tree

BUCKET = "lake"
DSN_ENV = "WAREHOUSE_DSN"


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def segops_yaml(s3_url: str | None = None, dsn_env: str = DSN_ENV) -> str:
    """Return a segops.yaml with a `files` connection and the `lake` and `warehouse` sources."""
    lake = (
        f"  lake:\n    type: s3\n    region: us-east-1\n    endpoint_url: {s3_url}\n"
        if s3_url
        else ""
    )
    return f"""\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 512MB, threads: 1}}
connections:
  out:
    platform: files
    target: mediarithmics
    path: out
sources:
{lake}  warehouse:
    type: postgres
    dsn_env: {dsn_env}
"""


def manifest(name: str, source: str) -> str:
    """Return a Segment of sha256 email hashes from `source` (the YAML of spec.source)."""
    return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: {name}}}
spec:
  source:
    {source}
  destinations:
    - connection: out
      datamart_id: "1509"
      segment_technical_name: {name}
      identifier: {{kind: email_hash, column: email_hash, format: sha256}}
"""


def workspace(root: Path, s3_url: str | None, segments: Mapping[str, str]) -> Path:
    """Write a workspace with one Segment per (name, spec.source YAML)."""
    files = {"segops.yaml": segops_yaml(s3_url)}
    files |= {f"segments/{name}.yaml": manifest(name, source) for name, source in segments.items()}
    write_tree(root, files)
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Return every file under `root` with its bytes (to check that nothing was written)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
