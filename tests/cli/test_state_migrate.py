"""`segops state migrate` moves a state between the local folder and S3 (a real server),
with its snapshots, journal and records, keeping lineage and serial."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from segops.state.local import LocalStateStore
from tests.s3server import REGION, S3Server, s3_server
from tests.s3state import BUNDLED, fresh_copy, objects, segops, set_aws_env, with_state

BUCKET = "segops-migrate"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def prefix() -> str:
    return f"mig/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def applied(tmp_path: Path) -> Path:
    """The bundled workspace with a local state, applied, plus a journal and a ledger."""
    root = fresh_copy(BUNDLED, tmp_path / "repo")
    code, out, err = segops(root, "apply", "--auto-approve")
    assert code == 0, out + err
    records = LocalStateStore(root / ".segops").records
    records.put("moengage-ledger-moe.json", b'{"format_version": 1, "entries": []}\n', None)
    journal = records.get("journal.jsonl")  # apply leaves it (empty once all is recorded)
    records.put("journal.jsonl", b'{"resource":"k","value":"v"}\n', journal and journal[1])
    return root


def to_s3(server: S3Server, prefix: str) -> list[str]:
    return [
        *("state", "migrate", "--to", "s3", "--bucket", BUCKET, "--prefix", prefix),
        *("--region", REGION, "--endpoint-url", server.endpoint_url),
    ]


def local_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_local_to_s3_and_back(tmp_path: Path, server: S3Server, prefix: str, applied: Path) -> None:
    before = LocalStateStore(applied / ".segops").read()
    assert before is not None
    files = local_files(applied / ".segops")
    code, out, err = segops(applied, *to_s3(server, prefix))
    assert code == 0, out + err
    assert f"Moved the state to s3://{BUCKET}/{prefix}: lineage {before.lineage}" in out
    assert f"serial {before.serial}" in out
    # Everything, byte for byte: state, backup, snapshots, journal, ledger.
    assert objects(server, BUCKET, prefix) == files
    block = out.rsplit("\n\n", 1)[1]  # the `state:` block to put in segops.yaml
    assert block.startswith("state:\n  backend: s3\n")

    # The old store refuses, saying where the state went and what to write.
    code, _, err = segops(applied, "plan")
    assert code == 1 and f"moved to s3://{BUCKET}/{prefix}" in err, err
    assert block in err
    assert local_files(applied / ".segops") == {**files, "moved.json": ANY_BYTES}

    # With the printed block, a fresh copy plans clean, and applies on the same lineage.
    repo = fresh_copy(applied, tmp_path / "s3-repo")
    (repo / "segops.yaml").write_text(with_state((repo / "segops.yaml").read_text(), block + "\n"))
    assert segops(fresh_copy(repo, tmp_path / "job1"), "plan", "--detailed-exitcode")[0] == 0
    csv = repo / "data" / "cart_abandoners.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-1]))
    assert segops(fresh_copy(repo, tmp_path / "job2"), "apply", "--auto-approve")[0] == 0
    after = json.loads(objects(server, BUCKET, prefix)["state.json"])
    # one write per destination of the segment (mediarithmics and MoEngage), after the copied
    assert (after["lineage"], after["serial"]) == (before.lineage, before.serial + 2)

    # And back to a local folder, from a fresh copy using the S3 state.
    back = fresh_copy(repo, tmp_path / "back")
    code, out, err = segops(back, "state", "migrate", "--to", "local", "--path", "state")
    assert code == 0, out + err
    local = LocalStateStore(back / "state").read()
    assert local is not None and (local.lineage, local.serial) == (before.lineage, after["serial"])
    assert "moved.json" in objects(server, BUCKET, prefix)
    assert segops(fresh_copy(repo, tmp_path / "job3"), "plan")[0] == 1  # S3 is retired now
    config = with_state((back / "segops.yaml").read_text(), out.rsplit("\n\n", 1)[1] + "\n")
    (back / "segops.yaml").write_text(config)
    assert segops(back, "plan", "--detailed-exitcode")[0] == 0


class _Any(bytes):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, bytes)

    __hash__ = bytes.__hash__


ANY_BYTES = _Any()


def test_a_target_that_holds_anything_is_refused(
    tmp_path: Path, server: S3Server, prefix: str, applied: Path
) -> None:
    server.client().put_object(Bucket=BUCKET, Key=f"{prefix}/journal.jsonl", Body=b"")
    before = local_files(applied / ".segops")
    code, out, err = segops(applied, *to_s3(server, prefix))
    assert code == 1 and "already holds a state or traces of one (journal.jsonl)" in err, err
    assert local_files(applied / ".segops") == before  # the source is untouched, unlocked
    assert set(objects(server, BUCKET, prefix)) == {"journal.jsonl"}  # the lock is gone too
    assert segops(applied, "plan", "--detailed-exitcode")[0] == 0


def test_a_held_lock_stops_migrate(server: S3Server, prefix: str, applied: Path) -> None:
    held = LocalStateStore(applied / ".segops").lock("apply")
    code, _, err = segops(applied, *to_s3(server, prefix))
    assert code == 1 and held.id in err and "locked" in err, err
    assert objects(server, BUCKET, prefix) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "s3"], "--bucket: give the S3 bucket name"),
        (["--to", "s3", "--bucket", "Bad_Bucket"], "--bucket: give the S3 bucket name"),
        (["--to", "s3", "--bucket", "okay-bucket", "--prefix", "/abs"], "--prefix: names of"),
        (["--to", "s3", "--bucket", "okay-bucket", "--path", "x"], "--path: only with --to local"),
        (["--to", "local", "--bucket", "b"], "--bucket: only with --to s3"),
        (["--to", "local", "--path", "../outside"], "--path: must stay inside the workspace"),
        (["--to", "local"], "the state is already in"),
    ],
)
def test_bad_options_are_refused(applied: Path, args: list[str], message: str) -> None:
    before = local_files(applied / ".segops")
    code, out, err = segops(applied, "state", "migrate", *args)
    assert code == 1 and message in err, err
    assert local_files(applied / ".segops") == before


def test_nothing_to_migrate(tmp_path: Path, server: S3Server, prefix: str) -> None:
    root = fresh_copy(BUNDLED, tmp_path / "empty")
    code, _, err = segops(root, *to_s3(server, prefix))
    assert code == 1 and "there is no state to migrate" in err, err
    assert objects(server, BUCKET, prefix) == {} and not (root / ".segops").exists()
