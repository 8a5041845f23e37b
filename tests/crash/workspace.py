"""The kill trials' workspace: a model of what is desired, written as manifests and checked.

One mediarithmics segment (email hashes with a data_bag and an expiration_ts per member) and
one MoEngage segment, each changed by one action per trial, plus an anchor segment that never
changes (a workspace needs a manifest). `check` compares what the emulators hold with the
model, attributes included, and every segment that no longer is desired must be empty.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from emulators.mediarithmics import MediarithmicsEmulator
from emulators.moengage import MoEngageEmulator

UNIVERSE = [f"user{i:03d}@example.com" for i in range(80)]
MICS_ACTIONS = ("add/remove", "update", "refresh", "recreate", "destroy", "create")
MOE_ACTIONS = ("add/remove", "recreate", "replace", "destroy", "create")
DURATIONS = (0, 60, 1440, 10080)

SEGOPS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 256MB{engine}}}
safety: {{max_removal_fraction: 1.0, allow_empty_source: true}}  # trials remove freely
connections:
  mics:
    platform: mediarithmics
    base_url: {mics}
    token_env: TRIAL_MICS_TOKEN
    batch_lines: 7
    poll_interval: 0.02
    max_attempts: 10
  moe:
    platform: moengage
    base_url: {moe}
    workspace_id_env: TRIAL_MOE_WS
    api_key_env: TRIAL_MOE_KEY
    publish: {{http: {{host: 127.0.0.1}}}}
    callback: {{listen: "127.0.0.1:0", wait: 20}}
    quota: {{ops_per_hour: 100000, ops_per_day: 100000, users_per_day: 100000000}}
    max_attempts: 10
"""

ANCHOR = """\
apiVersion: segops/v1
kind: Segment
metadata: {{name: trial_anchor}}
spec:
  source:
    members: [{{email_hash: {}}}]
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: trial_anchor
      identifier: {{kind: email_hash, format: sha256}}
""".format(hashlib.sha256(b"anchor@example.com").hexdigest())

MICS = """\
apiVersion: segops/v1
kind: Segment
metadata: {{name: trial_mics}}
spec:
  source:
    ndjson: {{path: ../data/mics.ndjson}}
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: {name}
      identifier: {{kind: email_hash, column: email_hash, format: sha256}}
      expiration_duration: {duration}
      data_bag: {{column: bag}}
      expiration_ts: {{column: ts}}
"""

MOE = """\
apiVersion: segops/v1
kind: Segment
metadata: {{name: trial_moe}}
spec:
  source:
    csv: {{path: ../data/moe.csv}}
  destinations:
    - connection: moe
      segment: {{name: {name}}}
      attribute: {{name: {attribute}, type: string, column: email}}
"""


def email_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


@dataclass
class Desired:
    """What both platforms must hold once apply converged."""

    mics_present: bool = True
    mics_name: str = "trial_mics"
    duration: int = 0
    # email -> (data_bag, expiration_ts)
    mics: dict[str, tuple[dict[str, object], int]] = field(default_factory=dict)
    moe_present: bool = True
    moe_name: str = "trial_moe"
    attribute: str = "email"
    moe: set[str] = field(default_factory=set)
    generation: int = 0  # names recreated segments
    engine: dict[str, object] = field(default_factory=dict)  # segops.yaml engine keys beyond limits

    def change(self, mics_action: str, moe_action: str, rng: random.Random) -> None:
        """Apply one action to each platform's segment (MICS_ACTIONS, MOE_ACTIONS; "keep": none)."""
        self.generation += 1
        if mics_action == "add/remove" or mics_action == "create":
            self.mics_present = True
            self.mics = {e: self.mics.get(e) or _attributes(rng) for e in _subset(rng)}
        elif mics_action == "update":  # some data bags and expiry dates change
            for email in rng.sample(sorted(self.mics), max(1, len(self.mics) // 2)):
                self.mics[email] = _attributes(rng)
        elif mics_action == "refresh":
            self.duration = rng.choice([d for d in DURATIONS if d != self.duration])
        elif mics_action == "recreate":
            self.mics_name = f"trial_mics_{self.generation}"
        elif mics_action == "destroy":
            self.mics_present = False
        if moe_action == "add/remove" or moe_action == "create":
            self.moe_present = True
            self.moe = set(_subset(rng))
        elif moe_action == "recreate":
            self.moe_name = f"trial_moe_{self.generation}"
        elif moe_action == "replace":
            self.attribute = "email_address" if self.attribute == "email" else "email"
        elif moe_action == "destroy":
            self.moe_present = False

    def write(self, root: Path, mics_url: str, moe_url: str) -> None:
        """Write segops.yaml, the manifests and their data files under `root`."""
        for folder in ("segments", "data"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        settings = {"threads": 1, **self.engine}
        engine = "".join(f", {key}: {json.dumps(value)}" for key, value in settings.items())
        (root / "segops.yaml").write_text(
            SEGOPS_YAML.format(mics=mics_url, moe=moe_url, engine=engine)
        )
        (root / "segments" / "anchor.yaml").write_text(ANCHOR)
        _place(root / "segments" / "mics.yaml", self.mics_present, self._mics_manifest())
        _place(root / "segments" / "moe.yaml", self.moe_present, self._moe_manifest())
        lines = [
            json.dumps({"email_hash": email_hash(e), "bag": bag, "ts": ts})
            for e, (bag, ts) in sorted(self.mics.items())
        ]
        (root / "data" / "mics.ndjson").write_text("".join(f"{line}\n" for line in lines))
        emails = "".join(f"{e}\n" for e in sorted(self.moe))
        (root / "data" / "moe.csv").write_text("email\n" + emails)

    def _mics_manifest(self) -> str:
        return MICS.format(name=self.mics_name, duration=self.duration)

    def _moe_manifest(self) -> str:
        return MOE.format(name=self.moe_name, attribute=self.attribute)

    def check(self, mics: MediarithmicsEmulator, moe: MoEngageEmulator) -> None:
        """Assert that the emulators hold exactly what is desired, and nothing else."""
        got = mics.member_attributes("1509")
        anchor = ("segment_technical_name", "trial_anchor")
        assert set(got.pop(anchor)) == {("email_hash", email_hash("anchor@example.com"))}
        want = {}
        if self.mics_present and self.mics:
            want[("segment_technical_name", self.mics_name)] = {
                ("email_hash", email_hash(e)): (self.duration, ts, bag)
                for e, (bag, ts) in self.mics.items()
            }
        seen = {
            segment: {
                member: (a["expiration_duration"], a["expiration_ts"], json.loads(a["data_bag"]))
                for member, a in members.items()
            }
            for segment, members in got.items()
        }
        assert seen.keys() == want.keys(), f"mediarithmics segments {sorted(seen)}"
        for segment, members in want.items():
            differ = {
                m
                for m in members.keys() | seen[segment].keys()
                if members.get(m) != seen[segment].get(m)
            }
            assert not differ, f"mediarithmics: {len(differ)} members differ in {segment}"
        segments = moe.segments()
        if self.moe_present and self.moe:
            assert self.moe_name in segments, f"moengage: segment {self.moe_name} is missing"
        for name, users in segments.items():
            expected = self.moe if self.moe_present and name == self.moe_name else set()
            assert users == expected, f"moengage {name}: {len(users ^ expected)} members differ"


def _subset(rng: random.Random) -> list[str]:
    return rng.sample(UNIVERSE, rng.randint(5, 40))


def _attributes(rng: random.Random) -> tuple[dict[str, object], int]:
    bag = {"tier": rng.choice(["gold", "silver"]), "points": rng.randint(0, 999)}
    return bag, 1_800_000_000_000 + rng.randint(0, 10**9)


def _place(path: Path, present: bool, text: str) -> None:
    if present:
        path.write_text(text)
    else:
        path.unlink(missing_ok=True)
