"""Renames through the CLI against both emulators: the platform segment keeps its members.

The reproduction of issue 10: a segment renamed while it still points at the same platform
segment, the new name sorting first. Before moves, apply created the new address, then
destroyed the old one, emptying the very segment both named. Also: MoEngage's 409 on a
segment segops does not know, `segops import`, and members accepted without a callback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.mediarithmics import MediarithmicsEmulator
from emulators.moengage import MoEngageEmulator
from tests.conftest import run, write_tree

MICS_TOKEN, MOE_WS, MOE_KEY = "mics-token-rename", "WSRENAME", "moe-key-rename"
EMAILS = [f"user{i:02d}@example.com" for i in range(12)]

SEGOPS_YAML = """\
version: 1
manifests: ["segments/*.yaml"]
engine: {{memory_limit: 256MB, threads: 1}}
connections:
  mics:
    platform: mediarithmics
    base_url: {mics}
    token_env: RENAME_MICS_TOKEN
    poll_interval: 0.02
  moe:
    platform: moengage
    base_url: {moe}
    workspace_id_env: RENAME_MOE_WS
    api_key_env: RENAME_MOE_KEY
    publish: {{http: {{host: 127.0.0.1}}}}
{callback}"""
CALLBACK = '    callback: {listen: "127.0.0.1:0", wait: 20}\n'


def segment(name: str, emails: list[str], extra: str = "") -> str:
    rows = "".join(
        f"      - {{email: {e}, email_hash: {hashlib.sha256(e.encode()).hexdigest()}}}\n"
        for e in emails
    )
    return f"""\
apiVersion: segops/v1
kind: Segment
metadata: {{name: {name}}}
spec:
  source:
    members:
{rows}  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: cart_abandoners
      identifier: {{kind: email_hash, format: sha256}}
    - connection: moe
      segment: {{name: cart_abandoners}}
      attribute: {{name: email}}
{extra}"""


@pytest.fixture
def platforms() -> Iterator[tuple[MediarithmicsEmulator, MoEngageEmulator]]:
    mics = MediarithmicsEmulator(MICS_TOKEN, process_delay=0.01)
    moe = MoEngageEmulator(
        MOE_WS, MOE_KEY, known_users=set(EMAILS), limits=(1000, 1000, 10**9), process_delay=0.01
    )
    with mics, moe:
        yield mics, moe


@pytest.fixture
def root(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: tuple[MediarithmicsEmulator, MoEngageEmulator],
) -> Path:
    mics, moe = platforms
    monkeypatch.setenv("RENAME_MICS_TOKEN", MICS_TOKEN)
    monkeypatch.setenv("RENAME_MOE_WS", MOE_WS)
    monkeypatch.setenv("RENAME_MOE_KEY", MOE_KEY)
    root = tmp_path / "ws"
    config = SEGOPS_YAML.format(mics=mics.base_url, moe=moe.base_url, callback=CALLBACK)
    write_tree(root, {"segops.yaml": config})
    return root


def mics_members(mics: MediarithmicsEmulator) -> set[str]:
    found = mics.members("1509").get(("segment_technical_name", "cart_abandoners"), set())
    return {value for _, value in found}


def hashes(emails: list[str]) -> set[str]:
    return {hashlib.sha256(e.encode()).hexdigest() for e in emails}


def test_a_rename_keeps_both_platform_segments_whole(
    root: Path, platforms: tuple[MediarithmicsEmulator, MoEngageEmulator]
) -> None:
    mics, moe = platforms
    write_tree(root, {"segments/cart.yaml": segment("zz_cart_abandoners", EMAILS[:8])})
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, out + err
    moe.wait_idle()
    assert mics_members(mics) == hashes(EMAILS[:8])
    assert moe.segments() == {"cart_abandoners": set(EMAILS[:8])}
    calls = (len(mics.server.requests), len(moe.server.requests))

    # Renamed; the new name sorts before the old one.
    (root / "segments/cart.yaml").unlink()
    write_tree(root, {"segments/abandoned.yaml": segment("abandoned_carts", EMAILS[:8])})
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, out + err
    assert "# zz_cart_abandoners.mics has moved to abandoned_carts.mics" in out
    assert "# zz_cart_abandoners.moe has moved to abandoned_carts.moe" in out
    moe.wait_idle()
    assert (len(mics.server.requests), len(moe.server.requests)) == calls, "nothing sent"
    assert mics_members(mics) == hashes(EMAILS[:8])
    assert moe.segments() == {"cart_abandoners": set(EMAILS[:8])}
    code, out, _ = run(root, "plan", "--detailed-exitcode")
    assert code == 0, out

    # Renamed again with member changes: only the difference goes out.
    (root / "segments/abandoned.yaml").unlink()
    write_tree(root, {"segments/a.yaml": segment("a_carts", EMAILS[2:10])})
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, out + err
    moe.wait_idle()
    assert mics_members(mics) == hashes(EMAILS[2:10])
    assert moe.segments() == {"cart_abandoners": set(EMAILS[2:10])}
    sent = [r.path.rsplit("/", 1)[1] for r in moe.server.requests if r.path.startswith("/v2/")]
    assert sent[-2:] == ["remove-users", "add-users"]


def test_moengage_409_points_at_import_which_adopts_the_segment(
    root: Path, platforms: tuple[MediarithmicsEmulator, MoEngageEmulator], tmp_path: Path
) -> None:
    mics, moe = platforms
    # Someone else made the MoEngage segment, with members segops never saw.
    other = tmp_path / "other"
    config = (root / "segops.yaml").read_text()
    write_tree(other, {"segops.yaml": config, "segments/s.yaml": segment("theirs", EMAILS[:3])})
    assert run(other, "apply", "--auto-approve", "--target", "theirs.moe")[0] == 0
    moe.wait_idle()

    write_tree(root, {"segments/cart.yaml": segment("cart", EMAILS[2:6])})
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 1
    assert "MoEngage segment 'cart_abandoners' already exists" in err
    assert "segops import cart.moe --members FILE" in err
    moe.wait_idle()
    assert moe.segments() == {"cart_abandoners": set(EMAILS[:3])}, "strangers not kept silently"

    exported = tmp_path / "moe-export.csv"
    exported.write_text("email\n" + "".join(f"{e}\n" for e in EMAILS[:3]))
    code, out, err = run(root, "import", "cart.moe", "--members", str(exported))
    assert code == 0, err
    code, out, err = run(root, "plan")
    assert "members: +3 -2  (3 → 4)" in out, out
    saved = tmp_path / "adopt.segplan"
    assert run(root, "plan", "-out", str(saved))[0] == 3  # 2 of 3 removed: a guard trips
    code, out, err = run(root, "apply", str(saved), "--allow-removals", "cart")
    assert code == 0, out + err
    moe.wait_idle()
    assert moe.segments() == {"cart_abandoners": set(EMAILS[2:6])}
    assert mics_members(mics) == hashes(EMAILS[2:6])


def test_on_existing_replace_takes_over_the_segment(
    root: Path, platforms: tuple[MediarithmicsEmulator, MoEngageEmulator], tmp_path: Path
) -> None:
    _, moe = platforms
    other = tmp_path / "other"
    config = (root / "segops.yaml").read_text()
    write_tree(other, {"segops.yaml": config, "segments/s.yaml": segment("theirs", EMAILS[:3])})
    assert run(other, "apply", "--auto-approve", "--target", "theirs.moe")[0] == 0
    moe.wait_idle()
    text = segment("cart", EMAILS[4:7]) + "      on_existing: replace\n"
    write_tree(root, {"segments/cart.yaml": text})
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, out + err
    moe.wait_idle()
    assert moe.segments() == {"cart_abandoners": set(EMAILS[4:7])}


def test_without_a_callback_members_are_accepted_unconfirmed(
    root: Path, platforms: tuple[MediarithmicsEmulator, MoEngageEmulator]
) -> None:
    mics, moe = platforms
    config = SEGOPS_YAML.format(mics=mics.base_url, moe=moe.base_url, callback="")
    write_tree(root, {"segops.yaml": config, "segments/cart.yaml": segment("cart", EMAILS[:4])})
    code, out, err = run(root, "apply", "--auto-approve")
    assert code == 0, out + err
    code, out, _ = run(root, "state", "show", "cart.moe")
    assert "confirmation:  accepted, unconfirmed" in out
    code, out, _ = run(root, "state", "show", "cart.mics")
    assert "unconfirmed" not in out
    code, out, _ = run(root, "plan")
    assert out.startswith("No changes. The state matches the manifests")
    assert (
        "cart.moe: the members last sent were accepted by the platform but never confirmed" in out
    )
