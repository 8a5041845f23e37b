"""`make demo-api`: the bundled workspace against emulated mediarithmics and MoEngage APIs.

Starts both emulators on 127.0.0.1, copies manifests/ to a temporary folder with a
segops.yaml whose connections are real API connections (MoEngage files published by an
`http` publisher, results received on a callback), sets demo credentials in the
environment, and runs validate → plan → apply → plan. Then prints what each emulated
platform holds, as counts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emulators.mediarithmics import MediarithmicsEmulator  # noqa: E402
from emulators.moengage import MoEngageEmulator  # noqa: E402

ENV = {"DEMO_MICS_TOKEN": "demo-mics-token", "DEMO_MOE_WS": "DEMOWS", "DEMO_MOE_KEY": "demo-key"}

SEGOPS_YAML = """\
version: 1
manifests: ["segments/**/*.yaml"]
connections:
  mics:
    platform: mediarithmics
    base_url: {mics}
    token_env: DEMO_MICS_TOKEN
    poll_interval: 0.1
  mics-csv:
    platform: mediarithmics
    base_url: {mics}
    token_env: DEMO_MICS_TOKEN
    mime_type: TEXT_CSV
    poll_interval: 0.1
  moe:
    platform: moengage
    base_url: {moe}
    workspace_id_env: DEMO_MOE_WS
    api_key_env: DEMO_MOE_KEY
    publish: {{http: {{host: 127.0.0.1}}}}
    callback: {{listen: "127.0.0.1:0", wait: 30}}
"""


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="segops-demo-api."))
    shutil.copytree(REPO / "manifests", work, dirs_exist_ok=True)
    for manifest in (work / "segments").glob("*.yaml"):
        text = manifest.read_text()
        for old, new in (
            ("files-mics-csv", "mics-csv"),
            ("files-mics", "mics"),
            ("files-moe", "moe"),
        ):
            text = text.replace(f"connection: {old}", f"connection: {new}")
        manifest.write_text(text)
    with (
        MediarithmicsEmulator(ENV["DEMO_MICS_TOKEN"]) as mics,
        MoEngageEmulator(ENV["DEMO_MOE_WS"], ENV["DEMO_MOE_KEY"]) as moe,
    ):
        (work / "segops.yaml").write_text(SEGOPS_YAML.format(mics=mics.base_url, moe=moe.base_url))
        print(f"mediarithmics emulator: {mics.base_url}\nMoEngage emulator:      {moe.base_url}")
        steps = [
            ["validate"],
            ["plan"],
            ["apply", "--auto-approve"],
            ["plan", "--detailed-exitcode"],
        ]
        for step in steps:
            print(f"\n$ segops {' '.join(step)}", flush=True)
            done = subprocess.run(
                [sys.executable, "-m", "segops", "-C", str(work), *step],
                env={**os.environ, **ENV},
            )
            if done.returncode != 0:
                print(f"segops {step[0]} exited {done.returncode}", file=sys.stderr)
                return done.returncode
        moe.wait_idle()
        print("\nWhat the emulated platforms hold:")
        for (field, value), members in sorted(mics.members("1509").items()):
            print(f"  mediarithmics datamart 1509, {field}={value}: {len(members)} members")
        for name, users in sorted(moe.segments().items()):
            print(f"  MoEngage file segment {name}: {len(users)} users")
    print(f"\nWorkspace copy: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
