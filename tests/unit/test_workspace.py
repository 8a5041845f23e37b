"""Loading a workspace: typed model objects, inputs, and every cross-check with its location."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from segops.config.workspace import load_workspace
from segops.errors import ManifestError, Problem
from segops.model import (
    DataPin,
    IdentifierKind,
    InlineObject,
    OnBadRows,
    Platform,
    SourceKind,
    Workspace,
)
from segops.planning.inputs import InputDigests, all_inputs, digest_file
from tests.conftest import file_pin, write_tree

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
version: 1
manifests: ["segments/**/*.yaml", "more/*.yml"]
connections:
  mics:
    platform: mediarithmics
    token_env: MICS_TOKEN
  moe:
    platform: moengage
    data_center: "02"
    workspace_id_env: MOE_WORKSPACE
    api_key_env: MOE_KEY
    publish: {s3: {bucket: bkt, prefix: p}}
  files-moe:
    platform: files
    target: moengage
    path: out/moe/
"""

CART = """\
apiVersion: segops/v1
kind: Segment
metadata:
  name: cart
  owner: crm
spec:
  source:
    csv: {path: ../data/cart.csv}
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: cart
      identifier: {kind: email_hash, column: hash, format: sha256}
      expiration_duration: 10080
      data_bag: {column: basket}
    - connection: moe
      segment: {name: cart_7d, cs_id: abc123}
      attribute: {name: email, type: string}
"""

CSV = "hash,email,basket\n" + "a" * 64 + ',x@example.com,"{""n"": 1}"\n'


def make_workspace(root: Path, manifests: Mapping[str, str], config: str = CONFIG) -> Path:
    """Write segops.yaml, `manifests` (path -> text) and data/cart.csv under `root`."""
    write_tree(root, {"segops.yaml": config, "data/cart.csv": CSV, **manifests})
    return root


def problems(root: Path) -> list[tuple[str, int | None, str, str]]:
    with pytest.raises(ManifestError) as caught:
        load_workspace(root)
    return [(p.file, p.line, p.path, p.message) for p in caught.value.problems]


def segment(name: str, destinations: str, source: str = "csv: {path: ../data/cart.csv}") -> str:
    """Return a Segment manifest; `destinations` is the YAML list, indented by 4."""
    return (
        f"apiVersion: segops/v1\nkind: Segment\nmetadata:\n  name: {name}\n"
        f"spec:\n  source:\n    {source}\n  destinations:\n{destinations}"
    )


MICS = '    - connection: mics\n      datamart_id: "1"\n      segment_id: "2"\n' + (
    "      identifier: {kind: email_hash}\n"
)


def mics(segment_id: str) -> str:
    """Return MICS writing to another mediarithmics segment."""
    return MICS.replace('segment_id: "2"', f'segment_id: "{segment_id}"')


INLINE = "members: [{email_hash: x}]"
MOE = "    - connection: moe\n      segment: {name: s}\n      attribute: {name: email}\n"


# -- the bundled example workspace ---------------------------------------------------------


@pytest.fixture(scope="module")
def bundled() -> Workspace:
    return load_workspace(REPO / "manifests")


def test_bundled_workspace_loads(bundled: Workspace) -> None:
    assert bundled.root == str((REPO / "manifests").resolve())
    assert [c.name for c in bundled.connections] == ["files-mics", "files-mics-csv", "files-moe"]
    assert {c.platform for c in bundled.connections} == {Platform.FILES}
    assert len(bundled.segments) >= 4
    assert len({s.manifest for s in bundled.segments}) >= 4


def test_bundled_workspace_covers_the_format(bundled: Workspace) -> None:
    destinations = bundled.destinations
    settings = [dict(d.settings) for d in destinations]
    assert {d.platform for d in destinations} == {Platform.MEDIARITHMICS, Platform.MOENGAGE}
    kinds = {d.identifier.kind for d in destinations}
    assert kinds == set(IdentifierKind)
    account = next(d for d in destinations if d.identifier.kind is IdentifierKind.USER_ACCOUNT_ID)
    assert "compartment_id" in dict(account.settings)
    assert any(d.identifier.format == "sha256" for d in destinations)
    assert any("segment_id" in s for s in settings)
    assert any("segment_technical_name" in s for s in settings)
    durations = {s["expiration_duration"] for s in settings if "expiration_duration" in s}
    assert 0 in durations and any(durations - {0})
    assert any(d.data_bag_column for d in destinations)
    # A sql source needs a database server: the one of tests/sources reads it instead.
    assert {s.source.kind for s in bundled.segments} == set(SourceKind) - {SourceKind.SQL}
    manifests = [s.manifest for s in bundled.segments]
    assert any(manifests.count(m) >= 2 for m in manifests)
    attributes = {s.get("attribute.name") for s in settings}
    assert {"email", "ID"} <= attributes
    moe = [d for d in destinations if d.platform == Platform.MOENGAGE]
    assert {d.connection.name for d in moe} == {"files-moe"}


def test_bundled_data_files_are_small_and_real(bundled: Workspace) -> None:
    root = Path(bundled.root)
    for segment_ in bundled.segments:
        source = segment_.source
        if source.kind is SourceKind.INLINE:
            assert source.rows and len(source.row_lines) == len(source.rows)
        elif source.kind is not SourceKind.PARQUET:
            assert source.path is not None
            lines = (root / source.path).read_text().splitlines()
            assert 10 <= len(lines) - (source.kind is SourceKind.CSV) <= 40
    hashed = next(d for d in bundled.destinations if d.identifier.format == "sha256")
    assert hashed.source.path is not None
    text = (root / hashed.source.path).read_text()
    assert hashlib.sha256(b"user008@example.com").hexdigest() in text
    agent = next(d for d in bundled.destinations if d.identifier.kind.value == "user_agent_id")
    assert agent.source.kind is SourceKind.PARQUET


def test_bundled_manifests_point_editors_at_the_schema() -> None:
    for path in (REPO / "manifests" / "segments").glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../schemas/segment.schema.json"


# -- model objects -------------------------------------------------------------------------


def test_typed_objects(tmp_path: Path) -> None:
    ws = load_workspace(make_workspace(tmp_path, {"segments/cart.yaml": CART}))
    moe = ws.connection("moe")
    assert moe is not None and moe.target == Platform.MOENGAGE
    assert moe.options == (
        ("api_key_env", "MOE_KEY"),
        ("data_center", "02"),
        ("publish.s3.bucket", "bkt"),
        ("publish.s3.prefix", "p"),
        ("workspace_id_env", "MOE_WORKSPACE"),
    )
    files = ws.connection("files-moe")
    assert files is not None and (files.platform, files.target) == (
        Platform.FILES,
        Platform.MOENGAGE,
    )
    assert files.option("path") == "out/moe"
    mics = ws.connection("mics")
    assert mics is not None and mics.option("mime_type") == "APPLICATION_X_NDJSON"
    (cart,) = ws.segments
    assert (cart.name, cart.manifest, cart.line, cart.owner) == (
        "cart",
        "segments/cart.yaml",
        4,
        "crm",
    )
    assert cart.source.kind is SourceKind.CSV
    assert (cart.source.path, cart.source.line, cart.source.manifest) == (
        "data/cart.csv",
        7,
        "segments/cart.yaml",
    )
    assert [d.address for d in ws.destinations] == ["cart.mics", "cart.moe"]
    assert ws.state_path == ".segops" and ws.state_backend == "local"


def test_settings_are_exactly_the_documented_keys(tmp_path: Path) -> None:
    ws = load_workspace(make_workspace(tmp_path, {"segments/cart.yaml": CART}))
    mics, moe = ws.destinations
    assert mics.settings == (
        ("connection", "mics"),
        ("datamart_id", "1509"),
        ("expiration_duration", 10080),
        ("identifier.format", "sha256"),
        ("identifier.kind", "email_hash"),
        ("segment_technical_name", "cart"),
    )
    assert (mics.identifier.column, mics.data_bag_column, mics.line) == ("hash", "basket", 10)
    assert moe.settings == (
        ("attribute.name", "email"),
        ("attribute.type", "string"),
        ("connection", "moe"),
        ("expiry_days", 365),
        ("segment.cs_id", "abc123"),
        ("segment.name", "cart_7d"),
    )
    assert moe.identifier.kind is IdentifierKind.ATTRIBUTE
    assert (moe.identifier.column, moe.identifier.attribute_name) == ("email", "email")
    for destination in ws.destinations:
        keys = [key for key, _ in destination.settings]
        assert keys == sorted(keys) and "connection" in keys
        assert None not in dict(destination.settings).values()


def test_account_settings_and_defaults(tmp_path: Path) -> None:
    account = (
        '    - connection: mics\n      datamart_id: "1"\n      segment_id: "2"\n'
        "      identifier: {kind: user_account_id}\n      compartment_id: '12'\n"
    )
    ws = load_workspace(make_workspace(tmp_path, {"segments/a.yaml": segment("a", account)}))
    (destination,) = ws.destinations
    assert destination.settings == (
        ("compartment_id", "12"),
        ("connection", "mics"),
        ("datamart_id", "1"),
        ("expiration_duration", 0),
        ("identifier.kind", "user_account_id"),
        ("segment_id", "2"),
    )
    assert destination.identifier.column == "user_account_id"
    assert destination.identifier.format is None


def test_inline_rows_keep_their_lines(tmp_path: Path) -> None:
    members = (
        "members:\n"
        "      - {email_hash: x1, bag: {b: 1, a: [1, 2]}, n: 3}\n"
        "      - email_hash: x2\n"
        "        ok: true\n"
        "    on_bad_rows: skip"
    )
    ws = load_workspace(make_workspace(tmp_path, {"segments/a.yaml": segment("a", MICS, members)}))
    source = ws.segments[0].source
    assert source.kind is SourceKind.INLINE and source.path is None
    assert source.on_bad_rows is OnBadRows.SKIP
    assert source.rows == (
        (("bag", InlineObject('{"a":[1,2],"b":1}')), ("email_hash", "x1"), ("n", 3)),
        (("email_hash", "x2"), ("ok", True)),
    )
    assert source.row_lines == (8, 9)


def test_inputs_are_every_file_read_with_its_digest(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART, "more/x.yml": segment("x", MOE)})
    ws = load_workspace(root)
    assert ws.data_files == ("data/cart.csv",)
    pins = all_inputs(ws)
    assert [i.path for i in pins.definitions] == ["more/x.yml", "segments/cart.yaml", "segops.yaml"]
    for item in pins.definitions:
        assert item.sha256 == hashlib.sha256((root / item.path).read_bytes()).hexdigest()
    pin = file_pin(root / "data/cart.csv")
    assert pins.data == (  # one file, read by two segments: pinned for each
        DataPin("cart", "data/cart.csv", pin),
        DataPin("x", "data/cart.csv", pin),
    )
    (root / "data/cart.csv").write_text(CSV + "b" * 64 + ",y@example.com,\n")
    after = all_inputs(load_workspace(root))
    assert after.definitions == pins.definitions
    assert {p.source for p in after.data} == {"data/cart.csv"}
    assert not set(after.data) & set(pins.data)


def test_only_the_chosen_segments_inputs_are_pinned(tmp_path: Path) -> None:
    x = segment("x", MOE, "members: [{email: a@example.com}]")
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART, "more/x.yml": x})
    ws = load_workspace(root)
    pins = InputDigests(ws, {"x"}).result()
    assert [i.path for i in pins.definitions] == ["more/x.yml", "segops.yaml"]
    assert pins.data == ()  # x's members are inline: they are part of its manifest
    assert [p.segment for p in InputDigests(ws, {"cart"}).result().data] == ["cart"]
    assert [i.path for i in InputDigests(ws, set()).result().definitions] == ["segops.yaml"]


def test_default_globs_find_yaml_and_yml(tmp_path: Path) -> None:
    config = CONFIG.replace('manifests: ["segments/**/*.yaml", "more/*.yml"]\n', "")
    root = make_workspace(
        tmp_path,
        {
            "manifests/a.yaml": segment("a", MICS, INLINE),
            "manifests/deep/b.yml": segment("b", MOE, INLINE),
        },
        config,
    )
    ws = load_workspace(root)
    assert [(s.name, s.manifest) for s in ws.segments] == [
        ("a", "manifests/a.yaml"),
        ("b", "manifests/deep/b.yml"),
    ]


# -- problems ------------------------------------------------------------------------------


def test_no_manifest_is_an_error(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, {})
    assert problems(root) == [
        ("segops.yaml", 2, "manifests", "no manifest file matches segments/**/*.yaml, more/*.yml")
    ]


def test_missing_or_broken_config(tmp_path: Path) -> None:
    assert problems(tmp_path)[0][0] == "segops.yaml"
    make_workspace(tmp_path, {"segments/a.yaml": segment("a", MICS)}, CONFIG + "  bad: {}\n")
    assert problems(tmp_path) == [
        ("segops.yaml", 17, "connections.bad", "missing required key 'platform'")
    ]


def test_schema_problems_of_every_manifest_are_collected(tmp_path: Path) -> None:
    root = make_workspace(
        tmp_path,
        {
            "segments/a.yaml": segment("a", MICS).replace("kind: Segment", "kind: Segmnt"),
            "segments/b.yaml": segment("b", MICS + "      colour: red\n"),
            "segments/c.yaml": "a: [1\n",
        },
    )
    found = problems(root)
    assert [(f, line, path) for f, line, path, _ in found] == [
        ("segments/a.yaml", 2, "kind"),
        ("segments/b.yaml", 13, "spec.destinations[0].colour"),
        ("segments/c.yaml", 1, ""),  # where the list opens
    ]


def test_duplicate_segment_names(tmp_path: Path) -> None:
    root = make_workspace(
        tmp_path,
        {"segments/a.yaml": segment("same", MICS), "segments/b.yaml": segment("same", MOE)},
    )
    assert problems(root) == [
        (
            "segments/b.yaml",
            4,
            "metadata.name",
            "segment 'same' is already defined at segments/a.yaml:4",
        )
    ]


def test_unknown_connection(tmp_path: Path) -> None:
    dest = MICS.replace("connection: mics", "connection: mics-prod")
    root = make_workspace(tmp_path, {"segments/a.yaml": segment("a", dest)})
    assert problems(root) == [
        (
            "segments/a.yaml",
            9,
            "spec.destinations[0].connection",
            "unknown connection 'mics-prod'; segops.yaml defines: files-moe, mics, moe",
        )
    ]


def test_two_destinations_writing_one_mediarithmics_segment(tmp_path: Path) -> None:
    again = MICS.replace("email_hash", "user_agent_id").replace(
        "- connection: mics", "- name: again\n      connection: mics"
    )
    root = make_workspace(
        tmp_path,
        {"segments/a.yaml": segment("a", MICS + again), "segments/b.yaml": segment("b", MICS)},
    )
    assert problems(root) == [
        (
            "segments/a.yaml",
            13,
            "spec.destinations[1]",
            "a.again sends to the same mediarithmics segment as a.mics (segments/a.yaml:9): "
            "connection 'mics', datamart_id '1', segment_id '2'",
        ),
        (
            "segments/b.yaml",
            9,
            "spec.destinations[0]",
            "b.mics sends to the same mediarithmics segment as a.mics (segments/a.yaml:9): "
            "connection 'mics', datamart_id '1', segment_id '2'",
        ),
    ]


def test_two_destinations_writing_one_moengage_segment(tmp_path: Path) -> None:
    by_id = "    - connection: files-moe\n      segment: {name: t, cs_id: id1}\n" + (
        "      attribute: {name: ID}\n"
    )
    root = make_workspace(
        tmp_path,
        {
            "segments/a.yaml": segment("a", MOE + by_id),
            "segments/b.yaml": segment("b", MOE),
            "segments/c.yaml": segment("c", by_id.replace("files-moe", "moe").replace("t,", "u,")),
        },
    )
    found = [(f, line, path, m.split(" as ")[1]) for f, line, path, m in problems(root)]
    assert found == [
        (
            "segments/b.yaml",
            9,
            "spec.destinations[0]",
            "a.moe (segments/a.yaml:9): connection 'moe', name 's'",
        ),
        (
            "segments/c.yaml",
            9,
            "spec.destinations[0]",
            "a.files-moe (segments/a.yaml:12): cs_id 'id1'",
        ),
    ]


def test_same_segment_on_another_connection_is_fine(tmp_path: Path) -> None:
    other = MOE.replace("connection: moe", "connection: files-moe")
    ws = load_workspace(make_workspace(tmp_path, {"segments/a.yaml": segment("a", MOE + other)}))
    assert len(ws.destinations) == 2


def test_identifier_the_platform_does_not_accept(tmp_path: Path) -> None:
    moe_with_identifier = MICS.replace("connection: mics", "connection: files-moe")
    mics_with_attribute = MOE.replace("connection: moe", "connection: mics")
    root = make_workspace(
        tmp_path,
        {
            "segments/a.yaml": segment("a", moe_with_identifier),
            "segments/b.yaml": segment("b", mics_with_attribute),
        },
    )
    found = problems(root)
    assert [(f, line, path) for f, line, path, _ in found] == [
        ("segments/a.yaml", 9, "spec.destinations[0]"),  # missing segment
        ("segments/a.yaml", 9, "spec.destinations[0]"),  # missing attribute
        ("segments/a.yaml", 10, "spec.destinations[0].datamart_id"),
        ("segments/a.yaml", 11, "spec.destinations[0].segment_id"),
        ("segments/a.yaml", 12, "spec.destinations[0].identifier"),
        ("segments/b.yaml", 9, "spec.destinations[0]"),  # missing datamart_id
        ("segments/b.yaml", 9, "spec.destinations[0]"),  # missing identifier
        ("segments/b.yaml", 9, "spec.destinations[0]"),  # missing segment reference
        ("segments/b.yaml", 10, "spec.destinations[0].segment"),
        ("segments/b.yaml", 11, "spec.destinations[0].attribute"),
    ]
    messages = {m for *_, m in found}
    assert (
        "identifier is for mediarithmics destinations, and connection 'files-moe' targets "
        "moengage; MoEngage identifies members by a user attribute: use attribute: "
        "{name, type, column}"
    ) in messages
    assert "missing required key 'identifier': connection 'mics' targets mediarithmics" in messages
    assert "missing required key 'attribute': connection 'files-moe' targets moengage" in messages


def test_platform_only_keys(tmp_path: Path) -> None:
    extras = "      data_bag: {column: bag}\n      expiration_ts: {column: ts}\n"
    moe_days = MICS + "      expiry_days: 30\n"
    root = make_workspace(
        tmp_path,
        {"segments/a.yaml": segment("a", MOE + extras), "segments/b.yaml": segment("b", moe_days)},
    )
    assert [(f, line, path) for f, line, path, _ in problems(root)] == [
        ("segments/a.yaml", 12, "spec.destinations[0].data_bag"),
        ("segments/a.yaml", 13, "spec.destinations[0].expiration_ts"),
        ("segments/b.yaml", 13, "spec.destinations[0].expiry_days"),
    ]


def test_compartment_id_rules(tmp_path: Path) -> None:
    account = MICS.replace("kind: email_hash", "kind: user_account_id")
    refused = MICS + "      compartment_id: '4'\n"
    root = make_workspace(
        tmp_path,
        {"segments/a.yaml": segment("a", account), "segments/b.yaml": segment("b", refused)},
    )
    assert problems(root) == [
        (
            "segments/a.yaml",
            9,
            "spec.destinations[0]",
            "compartment_id is required with identifier kind user_account_id",
        ),
        (
            "segments/b.yaml",
            13,
            "spec.destinations[0].compartment_id",
            "compartment_id is only allowed with identifier kind user_account_id",
        ),
    ]


def test_duplicate_destination_names(tmp_path: Path) -> None:
    second = MOE.replace("name: s}", "name: t}")
    named = MOE.replace("- connection: moe", "- connection: moe\n      name: moe").replace(
        "name: s}", "name: u}"
    )
    root = make_workspace(tmp_path, {"segments/a.yaml": segment("a", MOE + second + named)})
    assert problems(root) == [
        (
            "segments/a.yaml",
            12,
            "spec.destinations[1].connection",
            "destination name 'moe' is already used by spec.destinations[0] (line 9); "
            "give one of them a distinct `name`",
        ),
        (
            "segments/a.yaml",
            16,
            "spec.destinations[2].name",
            "destination name 'moe' is already used by spec.destinations[0] (line 9); "
            "give one of them a distinct `name`",
        ),
    ]


def test_source_outside_the_workspace_or_missing(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_tree(tmp_path, {"secret.csv": CSV})
    (root / "data").mkdir(parents=True)
    os.symlink(tmp_path / "secret.csv", root / "data" / "link.csv")
    make_workspace(
        root,
        {
            "segments/a.yaml": segment("a", mics("3"), "csv: {path: ../../secret.csv}"),
            "segments/b.yaml": segment("b", mics("4"), "ndjson: {path: ../data/link.csv}"),
            "segments/c.yaml": segment("c", mics("5"), "parquet: {path: ../data/nope.parquet}"),
            "segments/d.yaml": segment("d", mics("6"), "csv: {path: ../data/../data/cart.csv}"),
        },
    )
    found = problems(root)
    assert [(f, line, path) for f, line, path, _ in found] == [
        ("segments/a.yaml", 7, "spec.source.csv.path"),
        ("segments/b.yaml", 7, "spec.source.ndjson.path"),
        ("segments/c.yaml", 7, "spec.source.parquet.path"),
    ]
    assert "outside the workspace" in found[0][3]
    assert "outside the workspace" in found[1][3]
    assert "No such file" in found[2][3]


def test_paths_of_segops_yaml_stay_inside_the_workspace(tmp_path: Path) -> None:
    config = CONFIG.replace("path: out/moe/", "path: ../elsewhere")
    config = config.replace("connections:\n", "state: {path: /var/state}\nconnections:\n")
    root = make_workspace(tmp_path, {"segments/a.yaml": segment("a", MICS)}, config)
    assert problems(root) == [
        ("segops.yaml", 3, "state.path", "must stay inside the workspace"),
        ("segops.yaml", 17, "connections.files-moe.path", "must stay inside the workspace"),
    ]


def test_state_and_engine_settings(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "connections:\n",
        "state: {path: var/state/}\nengine: {memory_limit: 2GB, threads: 2}\nconnections:\n",
    )
    ws = load_workspace(make_workspace(tmp_path, {"segments/a.yaml": segment("a", MICS)}, config))
    assert (ws.state_backend, ws.state_path) == ("local", "var/state")
    assert (ws.engine.memory_limit, ws.engine.threads) == ("2GB", 2)


def test_every_problem_is_collected_and_sorted(tmp_path: Path) -> None:
    bad_connection = MICS.replace("connection: mics", "connection: nope")
    root = make_workspace(
        tmp_path,
        {
            "segments/b.yaml": segment("dup", bad_connection, "csv: {path: ../missing.csv}"),
            "segments/a.yaml": segment("dup", MICS) + "---\n" + segment("x", "    - 1\n"),
        },
    )
    with pytest.raises(ManifestError) as caught:
        load_workspace(root)
    found = caught.value.problems
    assert all(isinstance(p, Problem) for p in found)
    assert [(p.file, p.line) for p in found] == [
        ("segments/a.yaml", 22),
        ("segments/b.yaml", 4),
        ("segments/b.yaml", 7),
        ("segments/b.yaml", 9),
    ]
    assert str(found[0]).startswith("segments/a.yaml:22: spec.destinations[0]: expected a mapping")


def test_a_file_larger_than_the_read_buffer_is_pinned_whole(tmp_path: Path) -> None:
    """The digest reads a file in 1 MiB pieces: every byte counts, the last short piece too."""
    data = tmp_path / "big.csv"
    data.write_bytes(bytes(range(256)) * 13_000)  # 3.17 MiB: three full pieces and a short one
    pin = digest_file(data)
    assert pin == file_pin(data)
    with data.open("r+b") as handle:  # one byte changed in the last piece
        handle.seek(-1, os.SEEK_END)
        handle.write(b"x")
    assert digest_file(data) == file_pin(data) != pin
