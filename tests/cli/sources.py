"""Helpers for the source tests: a one-destination workspace, and what it sent."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_tree

# DuckDB's words, and other things a user must never see in a segops message.
JARGON = (
    "Binder Error",
    "Invalid Input",
    "Conversion Error",
    "Error:\n",
    "Try ",
    "auto-detect",
    "auto_detect",
    "strict_mode",
    "DuckDB",
    "duckdb",
    "Traceback",
    "Original Line",
    "/tmp/",
)

ACCOUNT = '{kind: user_account_id, column: id}\n      compartment_id: "12"'


def manifest(
    source: str,
    identifier: str = ACCOUNT,
    extra: str = "",
    spec: str = "",
) -> str:
    """Return a Segment `s` sending to `files-mics`; `extra` goes in the destination."""
    return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: s}}
spec:
  source:
    {source}
  destinations:
    - connection: files-mics
      datamart_id: "1509"
      segment_technical_name: s
      identifier: {identifier}
{extra}{spec}"""


def moengage(source: str, attribute: str) -> str:
    return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: s}}
spec:
  source:
    {source}
  destinations:
    - connection: files-moe
      segment: {{name: s}}
      attribute: {attribute}
"""


def write_workspace(root: Path, manifest_text: str, data: dict[str, bytes] | None = None) -> Path:
    write_tree(root, {"segments/s.yaml": manifest_text})
    for name, content in (data or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def sent(root: Path, field: str = "user_account_id") -> list[object]:
    """Return the `field` of every mediarithmics command line the files platform wrote."""
    lines = []
    for path in sorted((root / "out" / "mics").rglob("*.ndjson")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted((line.get(field) for line in lines), key=str)


def clean(err: str, *secrets: str) -> bool:
    """Return whether an error message holds no jargon and none of `secrets`."""
    return not any(word in err for word in (*JARGON, *secrets))
