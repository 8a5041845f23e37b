"""`segops init`: a new workspace that validates and plans at once, and a .gitignore.

Writes segops.yaml (one `files` connection: no credentials needed, the API connections
shown commented out), one commented example manifest with inline members, and a
.gitignore covering the state folder, the output folder and plan files: they hold member
identifiers, which are personal data. Existing files are never overwritten: an existing
.gitignore only gets the lines it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from segops.errors import UsageError

SEGOPS_YAML: Final = """\
# segops workspace: connections, state, safety. Reference: docs/configuration.md
version: 1
manifests: ["manifests/**/*.yaml"]

state:
  backend: local
  path: .segops              # holds member identifiers: keep it out of git (.gitignore)

connections:
  # A `files` connection writes what would be sent to the platform into a folder, with
  # no credentials: plan and apply the example before connecting an API.
  files-mics:
    platform: files
    target: mediarithmics
    path: out/mediarithmics   # member identifiers too: in .gitignore
  # The real APIs. Secrets are never written here: each *_env key names the environment
  # variable that holds one.
  # mics:
  #   platform: mediarithmics
  #   token_env: MICS_API_TOKEN
  # moe:
  #   platform: moengage
  #   data_center: "01"
  #   workspace_id_env: MOE_WORKSPACE_ID
  #   api_key_env: MOE_API_KEY
  #   publish: {s3: {bucket: my-bucket, prefix: segops/files, url_ttl: 6h}}

safety:
  max_removal_fraction: 0.25   # a plan may not remove more than 25% of a destination
  allow_empty_source: false    # an empty source never empties a destination
"""

EXAMPLE_MANIFEST: Final = """\
# One Segment: who belongs (source) and where they go (destinations).
# Reference: docs/manifests.md
apiVersion: segops/v1
kind: Segment
metadata:
  name: example_segment          # unique in the workspace
  description: Two test members, to try plan and apply
  owner: you
spec:
  source:
    # Members inline, for a start; a real segment reads a file:
    #   csv: {path: ../data/members.csv}      (or ndjson, parquet)
    members:
      - {email_hash: 8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11}
      - {email_hash: f871a76fb7b15231306b634dd91b385c48e9298974308e28e161d845e3e6f060}
  destinations:
    - connection: files-mics      # a connection of segops.yaml
      datamart_id: "1509"
      segment_technical_name: example_segment
      identifier: {kind: email_hash, format: sha256}
"""

GITIGNORE_HEADER: Final = "# segops: state, outputs and plan files hold member identifiers"
IGNORED: Final = (".segops/", "out/", "*.segplan")

MANIFEST_PATH: Final = "manifests/example.yaml"


@dataclass(frozen=True, slots=True)
class Written:
    created: tuple[str, ...]  # workspace-relative paths written
    gitignore_added: tuple[str, ...]  # lines added to an existing .gitignore


def init_workspace(root: Path) -> Written:
    """Write a new workspace in `root` (created if needed); never overwrite a file.

    Raises:
        UsageError: segops.yaml or the example manifest exists already (nothing written).
    """
    taken = [p for p in ("segops.yaml", MANIFEST_PATH) if (root / p).exists()]
    if taken:
        where = "this folder" if str(root) in ("", ".") else str(root)
        raise UsageError(
            f"{', '.join(taken)} already {'exists' if len(taken) == 1 else 'exist'} in "
            f"{where}: segops init writes a new workspace and overwrites nothing"
        )
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    created = []
    for name, text in (("segops.yaml", SEGOPS_YAML), (MANIFEST_PATH, EXAMPLE_MANIFEST)):
        with (root / name).open("x", encoding="utf-8") as handle:  # "x": never overwrite
            handle.write(text)
        created.append(name)
    gitignore = root / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(GITIGNORE_HEADER + "\n" + "".join(f"{p}\n" for p in IGNORED))
        return Written((*created, ".gitignore"), ())
    lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
    missing = tuple(p for p in IGNORED if p not in {line.strip() for line in lines})
    if missing:
        text = gitignore.read_text(encoding="utf-8", errors="replace")
        lead = "" if not text or text.endswith("\n") else "\n"
        added = lead + "\n" + GITIGNORE_HEADER + "\n" + "".join(f"{p}\n" for p in missing)
        with gitignore.open("a", encoding="utf-8") as handle:
            handle.write(added)
    return Written(tuple(created), missing)
