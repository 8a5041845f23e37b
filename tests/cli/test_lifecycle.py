"""Identity and lifecycle through the CLI: renames are moves, moved blocks, state list/show/
rm/mv, import, destroy, --replace and --target, on the local and the S3 state."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SEGOPS_YAML, mics_manifest, plan_json, run, write_tree
from tests.s3server import S3Server, s3_server
from tests.s3state import objects, s3_state, set_aws_env, with_state

BUCKET = "segops-lifecycle"


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


HASHES = [h(f"user{i}@example.com") for i in range(10)]


def members(root: Path, name: str, hashes: list[str]) -> None:
    write_tree(root, {f"data/{name}.csv": "email_hash\n" + "".join(f"{x}\n" for x in hashes)})


def manifest(segment: str, technical: str, data: str = "cart", extra: str = "") -> str:
    return mics_manifest(segment, f"csv: {{path: ../data/{data}.csv}}", technical, extra)


def out_lines(root: Path) -> list[str]:
    """Return every command line the files connection wrote, over all runs."""
    return [
        line
        for path in sorted((root / "out" / "mics").rglob("*.ndjson"))
        for line in path.read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(params=["local", "s3"])
def ws(request: pytest.FixtureRequest, workspace: Path, tmp_path: Path) -> Iterator[Path]:
    """The standard workspace, its state local or on the test S3 server; cart applied."""
    if request.param == "s3":
        monkeypatch = request.getfixturevalue("monkeypatch")
        set_aws_env(monkeypatch, tmp_path)
        server: S3Server = request.getfixturevalue("server")
        state = s3_state(BUCKET, f"t/{uuid.uuid4().hex[:10]}", server.endpoint_url)
        write_tree(workspace, {"segops.yaml": with_state(SEGOPS_YAML, state)})
    write_tree(workspace, {"segments/cart.yaml": manifest("cart", "cart")})
    members(workspace, "cart", HASHES[:6])
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    yield workspace


def addresses(root: Path) -> list[str]:
    code, out, err = run(root, "state", "list")
    assert code == 0, err
    return out.splitlines()


# -- renames are moves -----------------------------------------------------------------


def test_a_renamed_segment_moves_its_state_and_sends_nothing(ws: Path) -> None:
    sent_before = out_lines(ws)
    write_tree(ws, {"segments/cart.yaml": manifest("abandoned", "cart")})
    code, out, _ = run(ws, "plan", "--detailed-exitcode")
    assert code == 2
    assert "# cart.files-mics has moved to abandoned.files-mics" in out
    assert "1 to move" in out and "0 to destroy" in out and "0 to create" in out
    code, out, err = run(ws, "apply", "--auto-approve")
    assert code == 0, err
    assert addresses(ws) == ["abandoned.files-mics"]
    assert out_lines(ws) == sent_before, "a move sends no member"
    code, out, _ = run(ws, "plan", "--detailed-exitcode")
    assert code == 0 and out.startswith("No changes. The state matches the manifests")


def test_a_move_with_new_members_sends_only_the_difference(ws: Path) -> None:
    write_tree(ws, {"segments/cart.yaml": manifest("abandoned", "cart")})
    members(ws, "cart", HASHES[1:8])
    plan = plan_json(ws)
    (change,) = plan["changes"]
    assert change["moved_from"] == "cart.files-mics"
    assert change["actions"] == ["move", "add", "remove"]
    assert change["members"] == {
        "before": 6, "after": 7, "add": 2, "remove": 1, "update": 0, "skipped": 0
    }  # fmt: skip
    assert plan["summary"]["moved"] == 1
    assert run(ws, "apply", "--auto-approve")[0] == 0
    assert plan_json(ws)["changes"][0]["action"] == "no-op"


def test_a_renamed_destination_is_a_move_too(ws: Path) -> None:
    named = manifest("cart", "cart").replace(
        "- connection: files-mics\n", "- connection: files-mics\n      name: eu\n"
    )
    write_tree(ws, {"segments/cart.yaml": named})
    (change,) = plan_json(ws)["changes"]
    assert (change["address"], change["moved_from"], change["action"]) == (
        "cart.eu",
        "cart.files-mics",
        "move",
    )


def test_new_name_sorting_first_never_empties_the_segment(ws: Path) -> None:
    """The reproduction of the issue: the new address sorts before the old one. Before
    moves, the create ran, then the destroy deleted everyone from the shared segment."""
    write_tree(ws, {"segments/cart.yaml": manifest("aaa_cart", "cart")})
    assert run(ws, "apply", "--auto-approve")[0] == 0
    deletes = [line for line in out_lines(ws) if '"DELETE"' in line]
    assert deletes == []
    state = plan_json(ws)
    assert state["changes"][0]["members"]["after"] == 6


def test_selecting_only_the_new_segment_plans_the_move(ws: Path) -> None:
    write_tree(ws, {"segments/cart.yaml": manifest("abandoned", "cart")})
    plan = plan_json(ws, "--segment", "abandoned")
    assert [(c["address"], c["moved_from"]) for c in plan["changes"]] == [
        ("abandoned.files-mics", "cart.files-mics")
    ]
    code, _, err = run(ws, "plan", "--segment", "cart")
    assert code == 1
    assert "picks only the old address of a move (cart.files-mics moved to abandoned" in err


def test_a_saved_plan_with_a_move_applies(ws: Path, tmp_path: Path) -> None:
    write_tree(ws, {"segments/cart.yaml": manifest("abandoned", "cart")})
    saved = tmp_path / "move.segplan"
    assert run(ws, "plan", "-out", str(saved))[0] == 0
    code, out, err = run(ws, "apply", str(saved))
    assert code == 0, err
    assert addresses(ws) == ["abandoned.files-mics"]


def test_a_moved_block_carries_state_to_a_new_platform_segment(ws: Path) -> None:
    config = (ws / "segops.yaml").read_text()
    block = "moved:\n  - {from: cart.files-mics, to: basket.files-mics}\n"
    write_tree(ws, {"segops.yaml": config + block})
    write_tree(ws, {"segments/cart.yaml": manifest("basket", "basket")})
    (change,) = plan_json(ws)["changes"]
    assert change["moved_from"] == "cart.files-mics"
    assert change["action"] == "recreate"
    assert change["members"]["add"] == 6 and change["members"]["remove"] == 6
    assert run(ws, "apply", "--auto-approve")[0] == 0
    lines = [json.loads(x) for x in out_lines(ws)]
    removed = {x["email_hash"] for x in lines if x["operation"] == "DELETE"}
    assert removed == set(HASHES[:6])
    assert {x["segment_technical_name"] for x in lines if x["operation"] == "DELETE"} == {"cart"}
    assert addresses(ws) == ["basket.files-mics"]
    # The block stays in segops.yaml: applied, it does nothing.
    assert plan_json(ws)["changes"][0]["action"] == "no-op"


def test_moved_blocks_are_checked(workspace: Path) -> None:
    write_tree(workspace, {"segments/cart.yaml": manifest("cart", "cart")})
    members(workspace, "cart", HASHES[:2])
    first = SEGOPS_YAML.count("\n") + 2  # the line of the first block
    blocks = (
        "moved:\n"
        "  - {from: cart.files-mics, to: other.x}\n"
        "  - {from: old.a, to: cart.files-mics}\n"
        "  - {from: old.a, to: cart.files-mics}\n"
    )
    write_tree(workspace, {"segops.yaml": SEGOPS_YAML + blocks})
    code, _, err = run(workspace, "validate")
    assert code == 1
    assert f"segops.yaml:{first}: moved[0].from: cart.files-mics is still a destination" in err
    assert f"segops.yaml:{first}: moved[0].to: other.x is not a destination in the" in err
    assert f"segops.yaml:{first + 2}: moved[2].from: old.a is already the `from` of moved[1]" in err
    write_tree(workspace, {"segops.yaml": SEGOPS_YAML + "moved:\n  - {from: Bad, to: a.b}\n"})
    code, _, err = run(workspace, "plan")
    assert code == 1 and "moved[0].from: must be a destination address SEGMENT.NAME" in err
    assert not (workspace / ".segops").exists()


# -- state list / show / rm / mv ----------------------------------------------------------


def test_state_show_says_everything_but_the_members(ws: Path) -> None:
    code, out, err = run(ws, "state", "show", "cart.files-mics")
    assert code == 0, err
    assert out.startswith("# cart.files-mics\nsegment:       cart\n")
    assert "members:       6\n" in out
    assert '  segment_technical_name = "cart"' in out
    assert "platform files: writes what mediarithmics would receive" in out
    assert "last written:  run-000001 (apply) at " in out
    assert not any(x in out for x in HASHES)
    code, _, err = run(ws, "state", "show", "nope.x")
    assert code == 1 and "nope.x is not in the state (it holds: cart.files-mics)" in err


def test_state_rm_forgets_and_the_plan_points_at_import(ws: Path) -> None:
    before = out_lines(ws)
    code, out, err = run(ws, "state", "rm", "cart.files-mics")
    assert code == 0, err
    assert "Removed cart.files-mics from the state; its 6 members stay on the platform." in out
    assert "segops import cart.files-mics --members FILE" in out
    assert addresses(ws) == []
    assert out_lines(ws) == before, "forgetting sends nothing"
    code, out, _ = run(ws, "plan")
    assert "will be created" in out
    assert "forgot cart.files-mics and left its 6 members there" in out
    assert "segops import cart.files-mics --members FILE" in out
    code, _, err = run(ws, "state", "rm", "cart.files-mics")
    assert code == 1 and "not in the state" in err


def test_state_rm_keeps_a_backup(ws: Path, tmp_path: Path) -> None:
    assert run(ws, "state", "rm", "cart.files-mics")[0] == 0
    assert run(ws, "state", "recover", "--force")[0] == 0
    assert addresses(ws) == ["cart.files-mics"]


def test_state_mv_rekeys_and_warns_about_an_unknown_address(ws: Path) -> None:
    code, out, err = run(ws, "state", "mv", "cart.files-mics", "cart.old")
    assert code == 0, err
    assert out == "Moved cart.files-mics to cart.old (6 members).\n"
    assert "cart.old is not a destination in the manifests: the next plan destroys it" in err
    assert addresses(ws) == ["cart.old"]
    # cart.old and the manifest's cart.files-mics share a segment: the plan moves it back.
    (change,) = plan_json(ws)["changes"]
    assert (change["address"], change["moved_from"]) == ("cart.files-mics", "cart.old")
    code, _, err = run(ws, "state", "mv", "cart.old", "Cart")
    assert code == 1 and "not a destination address SEGMENT.NAME" in err
    assert run(ws, "state", "mv", "cart.old", "cart.files-mics")[0] == 0
    code, _, err = run(ws, "state", "mv", "cart.nope", "cart.x")
    assert code == 1 and "cart.nope is not in the state" in err


def test_state_commands_take_the_lock(ws: Path) -> None:
    lock = json.dumps(
        {"id": "lock-1", "operation": "apply", "who": "ci@x", "pid": 1, "created": "2026-01-01"}
    )
    if (ws / ".segops").exists():
        write_tree(ws, {".segops/lock.json": lock})
    else:
        return  # the S3 lock is covered by the conformance suite; its object name is the same
    for args in (("state", "rm", "cart.files-mics"), ("state", "mv", "cart.files-mics", "a.b")):
        code, _, err = run(ws, *args)
        assert code == 1 and "locked" in err
    assert addresses(ws) == ["cart.files-mics"]


def test_state_commands_on_s3_leave_the_state_there(
    workspace: Path, tmp_path: Path, server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_aws_env(monkeypatch, tmp_path)
    prefix = f"t/{uuid.uuid4().hex[:10]}"
    write_tree(
        workspace,
        {"segops.yaml": with_state(SEGOPS_YAML, s3_state(BUCKET, prefix, server.endpoint_url))},
    )
    write_tree(workspace, {"segments/cart.yaml": manifest("cart", "cart")})
    members(workspace, "cart", HASHES[:3])
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    assert run(workspace, "state", "mv", "cart.files-mics", "cart.b")[0] == 0
    stored = objects(server, BUCKET, prefix)
    assert "state.json.backup" in stored and "lock.json" not in stored
    assert list(json.loads(stored["state.json"])["destinations"]) == ["cart.b"]
    assert list(json.loads(stored["state.json.backup"])["destinations"]) == ["cart.files-mics"]
    assert not (workspace / ".segops").exists()


# -- import --------------------------------------------------------------------------------


def test_import_records_members_and_the_plan_sends_only_the_difference(ws: Path) -> None:
    write_tree(ws, {"segments/vip.yaml": manifest("vip", "vip", data="vip")})
    members(ws, "vip", HASHES[:5])
    write_tree(ws, {"exported.csv": "email_hash\n" + "".join(f"{x}\n" for x in HASHES[3:9])})
    code, out, err = run(ws, "import", "vip.files-mics", "--members", str(ws / "exported.csv"))
    assert code == 0, err
    assert out.startswith("Imported vip.files-mics: 6 members recorded as applied;")
    code, out, _ = run(ws, "plan", "--format", "json")
    assert code == 3  # 4 of the 6 imported members go: the removal guard sees them
    change = next(c for c in json.loads(out)["changes"] if c["segment"] == "vip")
    assert change["members"] == {
        "before": 6, "after": 5, "add": 3, "remove": 4, "update": 0, "skipped": 0
    }  # fmt: skip
    code, out, _ = run(ws, "state", "show", "vip.files-mics")
    assert "last written:  import --members exported.csv (import) at" in out
    code, _, err = run(ws, "import", "vip.files-mics", "--assume-empty")
    assert code == 1 and "already in the state" in err


def test_import_assume_empty_and_its_errors(ws: Path) -> None:
    write_tree(ws, {"segments/vip.yaml": manifest("vip", "vip", data="vip")})
    members(ws, "vip", HASHES[:2])
    bad = ws / "bad.csv"
    bad.write_text("email_hash\nnot-a-hash\n")
    code, _, err = run(ws, "import", "vip.files-mics", "--members", str(bad))
    assert code == 1
    assert "bad.csv:2: email_hash in column 'email_hash' is not 64 lowercase hex" in err
    assert "not-a-hash" not in err and "on_bad_rows" not in err
    code, _, err = run(ws, "import", "vip.files-mics")
    assert code == 1 and "exactly one of --members FILE and --assume-empty" in err
    code, _, err = run(ws, "import", "nope.x", "--assume-empty")
    assert code == 1 and "not a destination in the manifests" in err
    code, _, err = run(ws, "import", "vip.files-mics", "--members", str(ws / "m.xlsx"))
    assert code == 1 and "give a .csv, .ndjson (or .jsonl) or .parquet file" in err
    assert addresses(ws) == ["cart.files-mics"]
    assert run(ws, "import", "vip.files-mics", "--assume-empty")[0] == 0
    change = next(c for c in plan_json(ws)["changes"] if c["segment"] == "vip")
    assert change["action"] == "update" and change["members"]["add"] == 2


def test_import_refuses_the_new_address_of_a_rename(ws: Path) -> None:
    write_tree(ws, {"segments/cart.yaml": manifest("abandoned", "cart")})
    code, _, err = run(ws, "import", "abandoned.files-mics", "--assume-empty")
    assert code == 1 and "cart.files-mics in the state writes the same platform segment" in err


def test_a_segment_id_points_at_import_on_create(workspace: Path) -> None:
    text = manifest("vip", "x").replace("segment_technical_name: x", 'segment_id: "4242"')
    write_tree(workspace, {"segments/vip.yaml": text})
    members(workspace, "cart", HASHES[:2])
    write_tree(workspace, {"data/vip.csv": "email_hash\n" + HASHES[0] + "\n"})
    code, out, _ = run(workspace, "plan")
    assert "segment_id 4242 is an id mediarithmics gave it" in out
    assert "segops import vip.files-mics --members FILE" in out


# -- destroy, replace, target ---------------------------------------------------------------


def test_destroy_removes_every_member_behind_the_guards(ws: Path, tmp_path: Path) -> None:
    code, out, _ = run(ws, "plan", "--destroy")
    assert code == 3
    assert "destroy requested (--destroy)" in out
    assert run(ws, "apply", "--destroy", "--auto-approve")[0] == 3
    saved = tmp_path / "destroy.segplan"
    assert run(ws, "plan", "--destroy", "-out", str(saved))[0] == 3
    code, _, err = run(ws, "apply", str(saved), "--allow-removals", "cart")
    assert code == 0, err
    assert addresses(ws) == []
    deletes = [json.loads(x) for x in out_lines(ws) if '"DELETE"' in x]
    assert {x["email_hash"] for x in deletes} == set(HASHES[:6])
    code, out, _ = run(ws, "apply", str(saved), "--destroy")
    assert code == 1 and "a saved plan is applied as it was made" in out + _


def test_replace_resends_every_desired_member(ws: Path) -> None:
    code, out, err = run(ws, "apply", "--auto-approve", "--replace", "cart.files-mics")
    assert code == 0, err
    assert "replaced as requested (--replace)" in out
    last_run = sorted((ws / "out" / "mics").iterdir())[-1]
    lines = [json.loads(x) for p in last_run.rglob("*.ndjson") for x in p.read_text().split()]
    assert sorted(x["email_hash"] for x in lines if x["operation"] == "UPDATE") == sorted(
        HASHES[:6]
    )
    code, _, err = run(ws, "plan", "--replace", "nope.x")
    assert code == 1 and "--replace nope.x: not a destination the plan keeps" in err


def test_replace_on_moengage_files_writes_a_replace_request(workspace: Path) -> None:
    text = """\
apiVersion: segops/v1
kind: Segment
metadata: {name: news}
spec:
  source:
    members: [{email: ana@example.com}, {email: ben@example.com}]
  destinations:
    - connection: files-moe
      segment: {name: news}
      attribute: {name: email}
"""
    write_tree(workspace, {"segments/news.yaml": text})
    assert run(workspace, "apply", "--auto-approve")[0] == 0
    code, _, err = run(workspace, "apply", "--auto-approve", "--replace", "news.files-moe")
    assert code == 0, err
    run_dir = sorted((workspace / "out" / "moe").iterdir())[-1]
    requests = sorted(p.name for p in run_dir.rglob("*.json"))
    assert requests == ["01-replace.json"]
    assert sorted((run_dir / "moengage/news.files-moe/01-replace.csv").read_text().split()) == [
        "ana@example.com",
        "ben@example.com",
    ]


def test_target_selects_one_destination(ws: Path) -> None:
    write_tree(ws, {"segments/vip.yaml": manifest("vip", "vip", data="vip")})
    members(ws, "vip", HASHES[:2])
    members(ws, "cart", HASHES[:5])
    plan = plan_json(ws, "--target", "vip.files-mics")
    assert [c["address"] for c in plan["changes"]] == ["vip.files-mics"]
    assert plan["selection"] == "--target vip.files-mics"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--segment", "crat"), "--segment crat: matches no segment name"),
        (("--exclude", "vpi*"), "--exclude vpi*: matches no segment name"),
        (("--target", "cart.mics"), "--target cart.mics: matches no destination address"),
    ],
)
def test_patterns_that_match_nothing_are_errors(
    ws: Path, args: tuple[str, ...], named: str
) -> None:
    for command in (("plan",), ("apply", "--auto-approve")):
        code, _, err = run(ws, *command, *args)
        assert code == 1, err
        assert named in err


# -- where members live: a files connection that starts calling the API ------------------------


def test_a_files_connection_switching_platform_is_a_change(ws: Path) -> None:
    config = (ws / "segops.yaml").read_text()
    switched = config.replace(
        "  files-mics:\n    platform: files\n    target: mediarithmics\n    path: out/mics\n",
        "  files-mics:\n    platform: mediarithmics\n    token_env: NO_SUCH_TOKEN_ENV\n",
    )
    assert switched != config
    write_tree(ws, {"segops.yaml": switched})
    code, out, _ = run(ws, "plan", "--detailed-exitcode")
    assert code == 2, out
    assert '~ connection.platform: "files" → "mediarithmics"' in out
    assert "files-mics now sends to mediarithmics instead of writing files" in out
    (change,) = plan_json(ws)["changes"]
    assert change["full"] is True
    assert change["members"] == {
        "before": 6, "after": 6, "add": 6, "remove": 0, "update": 0, "skipped": 0
    }  # fmt: skip


def test_state_commands_wait_for_an_interrupted_apply(ws: Path) -> None:
    """An operation that may have landed (sent, not yet in state.json) blocks rm, mv, import."""
    if not (ws / ".segops").exists():
        return  # the journal is a record like any other on S3: same code path
    entry = {"op": "mics:1", "address": "cart.files-mics", "status": "sent", "base": "x"}
    write_tree(ws, {".segops/journal.jsonl": json.dumps(entry) + "\n"})
    for args in (("state", "rm", "cart.files-mics"), ("state", "mv", "cart.files-mics", "a.b")):
        code, _, err = run(ws, *args)
        assert code == 1
        assert "cart.files-mics: an apply of it was interrupted" in err
    entry["status"] = "failed"  # never landed: no reason to wait
    write_tree(ws, {".segops/journal.jsonl": json.dumps(entry) + "\n"})
    assert run(ws, "state", "rm", "cart.files-mics")[0] == 0


# -- explain --------------------------------------------------------------------------------


def test_explain_says_where_one_member_is_and_prints_no_identifier(ws: Path) -> None:
    write_tree(ws, {"segments/vip.yaml": manifest("vip", "vip", data="vip")})
    members(ws, "vip", [HASHES[7], HASHES[2], HASHES[2]])
    code, out, err = run(ws, "explain", input=HASHES[2] + "\n")
    assert code == 0, err
    assert out == (
        "cart.files-mics\n"
        "  desired: yes: segments/cart.yaml: data/cart.csv, line 4\n"
        "  applied: yes: the state's snapshot holds it (entry last written by run-000001, apply)\n"
        "vip.files-mics\n"
        "  desired: yes: segments/vip.yaml: data/vip.csv, lines 3, 4\n"
        "  applied: no: the state has nothing at this address\n"
        "  next apply: adds it\n"
    )
    (ws / "id.txt").write_text(HASHES[0])
    members(ws, "cart", HASHES[1:6])
    code, out, _ = run(ws, "explain", str(ws / "id.txt"))
    assert "cart.files-mics\n  desired: no: not in data/cart.csv (column 'email_hash')\n" in out
    assert "  next apply: removes it\n" in out
    assert not any(x in out for x in HASHES)
    code, out, _ = run(ws, "explain", input="user@example.com\n")
    assert "desired: no: it cannot be a member here: not a valid email_hash (sha256)" in out


def test_explain_reads_one_identifier_never_from_argv(ws: Path) -> None:
    code, _, err = run(ws, "explain", HASHES[1])
    assert code == 1 and "never from the command line" in err and HASHES[1] not in err
    code, _, err = run(ws, "explain", input=f"{HASHES[1]}\n{HASHES[2]}\n")
    assert code == 1 and "holds 2 lines; give exactly one identifier" in err
    assert HASHES[1] not in err
    code, _, err = run(ws, "explain", input="")
    assert code == 1 and "holds 0 lines" in err


def test_saved_plans_keep_their_target_and_replace(ws: Path, tmp_path: Path) -> None:
    write_tree(ws, {"segments/vip.yaml": manifest("vip", "vip", data="vip")})
    members(ws, "vip", HASHES[:2])
    targeted = tmp_path / "target.segplan"
    assert run(ws, "plan", "--target", "vip.*", "-out", str(targeted))[0] == 0
    replaced = tmp_path / "replace.segplan"
    assert run(ws, "plan", "--replace", "cart.files-mics", "-out", str(replaced))[0] == 0
    code, out, err = run(ws, "apply", str(targeted))
    assert code == 0, err
    assert addresses(ws) == ["cart.files-mics", "vip.files-mics"]
    code, out, err = run(ws, "apply", str(replaced))  # stale: vip was applied since
    assert code == 1 and "stale" in err
    assert run(ws, "plan", "--replace", "cart.files-mics", "-out", str(replaced))[0] == 0
    code, out, err = run(ws, "show", str(replaced), "--format", "json")
    assert json.loads(out)["replace"] == ["cart.files-mics"]
    code, out, err = run(ws, "apply", str(replaced))
    assert code == 0, err
    assert "cart.files-mics: done (+6 ~0 -0 sent" in out or "cart.files-mics: done (+0 ~6" in out
