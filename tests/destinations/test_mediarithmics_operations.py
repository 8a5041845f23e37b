"""The plan's mediarithmics `operations` is exactly the number of executions apply uploads.

Each case applies a first membership, then a second one, through the CLI against the
emulator on 127.0.0.1, and compares each plan's count with the uploads the emulator got.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from emulators.mediarithmics import MediarithmicsEmulator
from segops.destinations.mediarithmics.batches import BatchLimits, count_batches, iter_batches
from segops.model import (
    Action,
    DeltaFile,
    DestinationChange,
    KeyEncoding,
    MemberCounts,
    MemberRow,
    Platform,
)
from tests.conftest import run, write_tree
from tests.emulators.fixtures_mediarithmics import TOKEN, settings

SEGOPS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 256MB, threads: 1}}
safety: {{max_removal_fraction: 1.0, allow_empty_source: true}}
connections:
  mics:
    platform: mediarithmics
    base_url: {base_url}
    token_env: OPS_MICS_TOKEN
    poll_interval: 0.01
{options}"""

KEEP = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: keep}
spec:
  source:
    members: [{key: crm-1}]
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: keep
      identifier: {kind: user_account_id, column: key}
      compartment_id: "12"
"""


@dataclass(frozen=True)
class Target:
    """One mediarithmics destination and the members its source holds."""

    members: tuple[str, ...]
    datamart: str = "1509"
    ref: str = "segment_technical_name: cart"
    kind: str = "email_hash"
    duration: int = 0
    bags: bool = False  # a data_bag per member, of varying length

    def manifest(self) -> str:
        identifier = (
            "{kind: email_hash, column: key, format: sha256}"
            if self.kind == "email_hash"
            else '{kind: user_account_id, column: key}\n      compartment_id: "12"'
        )
        bag = "\n      data_bag: {column: bag}" if self.bags else ""
        return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: cart}}
spec:
  source:
    ndjson: {{path: ../data/cart.ndjson}}
  destinations:
    - connection: mics
      datamart_id: "{self.datamart}"
      {self.ref}
      identifier: {identifier}
      expiration_duration: {self.duration}{bag}
"""

    def source(self) -> str:
        lines = []
        for i, member in enumerate(self.members):
            key = (
                hashlib.sha256(member.encode()).hexdigest() if self.kind == "email_hash" else member
            )
            row: dict[str, object] = {"key": key}
            if self.bags:
                row["bag"] = {"note": "x" * (i * 7 % 40), "n": i}
            lines.append(json.dumps(row))
        return "".join(f"{line}\n" for line in lines)


def people(n: int, start: int = 0) -> tuple[str, ...]:
    return tuple(f"user{i:04d}@example.com" for i in range(start, start + n))


def accounts(n: int, start: int = 0) -> tuple[str, ...]:
    return tuple(f"crm-{'9' * (i % 23)}{i}" for i in range(start, start + n))  # varying lengths


@dataclass(frozen=True)
class Case:
    first: Target | None
    second: Target | None
    options: dict[str, object] = field(default_factory=dict)
    executions: int | None = None  # what the second apply uploads, counted by hand


CASES = {
    "adds only, over the line limit": Case(None, Target(people(25)), {"batch_lines": 10}, 3),
    "removes only": Case(Target(people(25)), Target(people(13)), {"batch_lines": 5}, 3),
    # 3 removes and 4 adds fit one execution: the old count said two
    "removes and adds share one execution": Case(
        Target(people(20)), Target(people(17) + people(4, 100)), {"batch_lines": 10}, 1
    ),
    "removes and adds cross a line boundary together": Case(
        Target(people(20)), Target(people(14) + people(7, 100)), {"batch_lines": 5}, 3
    ),
    "recreate across datamarts": Case(
        Target(people(10)),
        Target(people(12), datamart="1510", ref='segment_id: "77"'),
        {"batch_lines": 5},
        5,
    ),
    "refresh of expiration_duration resends everyone": Case(
        Target(people(12)), Target(people(12), duration=60), {"batch_lines": 5}, 3
    ),
    "over the byte limit": Case(Target(people(9)), Target(people(40, 5)), {"batch_bytes": 1024}, 7),
    "over the byte limit, CSV with its header": Case(
        Target(people(9)),
        Target(people(30, 5)),
        {"batch_bytes": 1024, "mime_type": "TEXT_CSV"},
        3,  # 31 lines of 79 bytes, 12 a file after the 64-byte header
    ),
    "destroy": Case(Target(people(17)), None, {"batch_lines": 4}, 5),
    "lines of varying length (accounts, data bags) over the byte limit": Case(
        Target(accounts(20), kind="user_account_id", bags=True),
        Target(accounts(30, 7), kind="user_account_id", bags=True),
        {"batch_bytes": 1024},
    ),
    "updated data bags with adds and removes, CSV": Case(
        Target(accounts(40), kind="user_account_id", bags=True),
        Target(accounts(35, 5)[::-1], kind="user_account_id", bags=True),
        {"batch_bytes": 1024, "mime_type": "TEXT_CSV"},
    ),
}


@pytest.fixture
def emulator() -> Iterator[MediarithmicsEmulator]:
    with MediarithmicsEmulator(TOKEN, datamarts={"1509", "1510"}, process_delay=0.002) as emu:
        yield emu


def write(root: Path, emulator: MediarithmicsEmulator, case: Case, target: Target | None) -> None:
    options = "".join(f"    {k}: {v}\n" for k, v in case.options.items())
    write_tree(
        root, {"segops.yaml": SEGOPS_YAML.format(base_url=emulator.base_url, options=options)}
    )
    write_tree(root, {"segments/keep.yaml": KEEP})  # a workspace needs one manifest
    manifest = root / "segments" / "cart.yaml"
    if target is None:
        manifest.unlink(missing_ok=True)
        return
    write_tree(root, {"segments/cart.yaml": target.manifest(), "data/cart.ndjson": target.source()})


def planned_then_uploaded(root: Path, emulator: MediarithmicsEmulator) -> tuple[int, int]:
    """Return (operations the plan counts, executions the apply that follows uploads)."""
    code, out, err = run(root, "plan", "--format", "json")
    assert code == 0, err
    planned = sum(c["operations"] for c in json.loads(out)["changes"])
    before = len(emulator.executions())
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, out + err
    return planned, len(emulator.executions()) - before


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan_counts_the_executions_apply_uploads(
    case: Case, emulator: MediarithmicsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_MICS_TOKEN", TOKEN)
    root = tmp_path / "ws"
    write(root, emulator, case, None)
    assert planned_then_uploaded(root, emulator) == (1, 1)
    if case.first is not None:
        write(root, emulator, case, case.first)
        planned, uploaded = planned_then_uploaded(root, emulator)
        assert planned == uploaded
    write(root, emulator, case, case.second)
    planned, uploaded = planned_then_uploaded(root, emulator)
    assert planned == uploaded
    if case.executions is None:
        assert uploaded > 1, "the case must cross a limit"
    else:
        assert uploaded == case.executions
    assert all(e["status"] == "SUCCEEDED" for e in emulator.executions())
    code, _, err = run(root, "plan", "--detailed-exitcode")
    assert code == 0, err


def change_of(
    removes: int, adds: int, same_target: bool, attributes: tuple[str, ...] = ()
) -> DestinationChange:
    before = settings(**{"identifier.format": "sha256"})
    after = (
        before
        if same_target
        else settings(**{"identifier.format": "sha256", "datamart_id": "1510"})
    )
    return DestinationChange(
        address="cart.mics",
        segment="cart",
        connection="mics",
        platform=Platform.MEDIARITHMICS,
        actions=(Action.UPDATE,),
        settings_before=before if removes else None,
        settings_after=after if adds or not removes else None,
        setting_changes=(),
        members=MemberCounts(add=adds, remove=removes),
        delta=DeltaFile("e" * 64, removes + adds),
        encoding=KeyEncoding.HEX,
        attributes=attributes,
    )


@pytest.mark.parametrize("mime", ["APPLICATION_X_NDJSON", "TEXT_CSV"])
@pytest.mark.parametrize("same_target", [True, False])
@pytest.mark.parametrize(
    "removes,adds,lines,size",
    [
        (0, 1, 1, 1024),
        (7, 0, 3, 1024),
        (3, 4, 10, 100_000),
        (6, 7, 5, 1024),
        (50, 75, 9, 2048),
        (1, 1, 500_000, 1024),
        (33, 0, 500_000, 1500),
        (120, 240, 41, 4096),
    ],
)
def test_arithmetic_count_equals_the_batches_cut(
    removes: int, adds: int, lines: int, size: int, same_target: bool, mime: str
) -> None:
    change = change_of(removes, adds, same_target)
    rows = [MemberRow("remove", f"{i:064x}", index=i) for i in range(removes)]
    rows += [MemberRow("add", f"{i:064x}", index=removes + i) for i in range(adds)]
    limits = BatchLimits(lines, size)
    cut = sum(1 for _ in iter_batches(change, iter(rows), mime, limits))
    assert count_batches(change, mime, limits) == cut  # without reading a single row
    assert count_batches(change, mime, limits, lambda: iter(rows)) == cut


def test_rows_are_read_only_when_line_lengths_vary(monkeypatch: pytest.MonkeyPatch) -> None:
    read = []

    def rows() -> Iterator[MemberRow]:
        read.append(1)
        yield from (MemberRow("add", f"{i:064x}", '{"n":1}', index=i) for i in range(5))

    fixed = change_of(0, 5, True)
    assert count_batches(fixed, "APPLICATION_X_NDJSON", BatchLimits(2, 1024), rows) == 3
    assert read == []
    varying = change_of(0, 5, True, attributes=("data_bag",))
    assert count_batches(varying, "APPLICATION_X_NDJSON", BatchLimits(2, 1024), rows) == 3
    assert read == [1]
