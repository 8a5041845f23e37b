"""YAML loading (safety, line numbers) and schema problems of segops.config.documents."""

from __future__ import annotations

import pytest

from segops.config import documents as manifest
from segops.config.documents import (
    LOADERS,
    MAX_FILE_BYTES,
    Document,
    format_path,
    load_documents,
)
from segops.config.schemas import validate_document
from segops.errors import ManifestError, Problem

SEGMENT = """\
apiVersion: segops/v1
kind: Segment
metadata:
  name: cart
spec:
  source:
    csv: {path: ../data/cart.csv}
  destinations:
    - connection: mics
      datamart_id: "1509"
      segment_technical_name: cart
      identifier:
        kind: email_hash
        format: sha256
    - connection: moe
      segment: {name: cart}
      attribute: {name: email}
"""


@pytest.fixture(autouse=True, params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test with libyaml and with the pure-Python parser: they must agree."""
    monkeypatch.setattr(manifest, "loader_name", request.param)
    return str(request.param)


def load_one(text: str, file: str = "m.yaml") -> Document:
    docs = load_documents(text.encode(), file)
    assert len(docs) == 1
    return docs[0]


def problems_of(text: str, file: str = "m.yaml") -> tuple[Problem, ...]:
    with pytest.raises(ManifestError) as caught:
        load_documents(text.encode() if isinstance(text, str) else text, file)
    return caught.value.problems


def schema_problems(text: str, schema: str = "segment") -> list[tuple[int | None, str, str]]:
    problems = validate_document(load_one(text), schema)
    assert all(p.file == "m.yaml" for p in problems)
    return [(p.line, p.path, p.message) for p in problems]


# -- loading -------------------------------------------------------------------------------


def test_lines_of_keys_and_sequence_items() -> None:
    doc = load_one(SEGMENT)
    assert doc.line == 1
    assert doc.lines[("metadata", "name")] == 4
    assert doc.lines[("spec", "destinations", 0)] == 9
    assert doc.lines[("spec", "destinations", 0, "identifier", "kind")] == 13
    assert doc.lines[("spec", "destinations", 1, "attribute", "name")] == 17
    # a path the document does not hold is located at its nearest ancestor
    assert doc.line_of(("spec", "destinations", 1, "attribute", "type")) == 17
    assert doc.line_of(("spec", "destinations", 1, "expiry_days")) == 15


def test_format_path() -> None:
    assert format_path(("spec", "destinations", 0, "identifier", "kind")) == (
        "spec.destinations[0].identifier.kind"
    )
    assert format_path(()) == ""
    assert format_path(("spec", "source", "members", 3)) == "spec.source.members[3]"


def test_several_documents_keep_their_own_lines() -> None:
    text = "a: 1\n---\n# comment\nb: 2\nc: [x, y]\n---\n"
    docs = load_documents(text.encode(), "two.yaml")
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2, "c": ["x", "y"]}, None]
    assert [d.index for d in docs] == [0, 1, 2]
    assert docs[1].lines[("b",)] == 4
    assert docs[1].lines[("c", 1)] == 5


def test_duplicate_key_names_the_line_of_the_second() -> None:
    text = "a: 1\nspec:\n  x: 1\n  y: 2\n  x: 3\n"
    (problem,) = problems_of(text)
    assert problem == Problem("m.yaml", "duplicate key 'x' (first at line 3)", 5, "spec.x")


def test_every_duplicate_key_of_every_document_is_reported() -> None:
    text = "a: 1\na: 2\n---\nb: 1\nc: 2\nb: 3\n"
    assert [(p.line, p.path) for p in problems_of(text)] == [(2, "a"), (6, "b")]


def test_anchors_aliases_and_merge_keys_are_allowed() -> None:
    text = (
        "defaults: &d {connection: mics, datamart_id: '1'}\n"
        "list:\n"
        "  - <<: *d\n"
        "    datamart_id: '2'\n"
        "  - *d\n"
    )
    doc = load_one(text)
    assert doc.data["list"] == [
        {"connection": "mics", "datamart_id": "2"},
        {"connection": "mics", "datamart_id": "1"},
    ]
    assert doc.lines[("list", 0, "datamart_id")] == 4  # the key of the mapping itself wins
    assert doc.lines[("list", 0, "connection")] == 1  # merged keys point at their anchor


def test_alias_bomb_is_refused() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        prev = chr(ord("a") + n - 1)
        name = chr(ord("a") + n)
        levels.append(f"{name}: &{name} [{', '.join('*' + prev for _ in range(10))}]")
    (problem,) = problems_of("\n".join(levels) + "\n")
    assert problem.message.startswith("alias expansion too large")
    assert problem.line is not None and 1 <= problem.line <= 9


def test_a_large_document_without_aliases_is_not_a_bomb() -> None:
    # Run with the default (fastest) loader only: the node count does not depend on it.
    text = "members:\n" + "".join(f"  - {{id: u{i}}}\n" for i in range(40_000))
    assert len(load_one(text).data["members"]) == 40_000


def test_recursive_alias_is_refused() -> None:
    (problem,) = problems_of("a: &a [1, *a]\n")
    assert problem.message == "recursive alias"


def test_oversized_file_is_refused() -> None:
    data = b"a: " + b"x" * MAX_FILE_BYTES + b"\n"
    with pytest.raises(ManifestError) as caught:
        load_documents(data, "big.yaml")
    (problem,) = caught.value.problems
    assert problem.file == "big.yaml"
    assert "5 MiB" in problem.message


def test_non_utf8_names_the_line() -> None:
    data = "a: 1\nb: caf\u00e9\n".encode("latin-1")
    with pytest.raises(ManifestError) as caught:
        load_documents(data, "latin.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("latin.yaml", 2)
    assert "UTF-8" in problem.message


def test_bom_is_accepted() -> None:
    docs = load_documents(b"\xef\xbb\xbfa: 1\nb: 2\n", "bom.yaml")
    assert docs[0].data == {"a": 1, "b": 2}
    assert docs[0].lines[("b",)] == 2


def test_crlf_is_accepted_with_the_same_lines() -> None:
    crlf = load_one(SEGMENT.replace("\n", "\r\n"))
    lf = load_one(SEGMENT)
    assert crlf.data == lf.data
    assert crlf.lines == lf.lines


def test_syntax_error_names_the_line() -> None:
    (problem,) = problems_of("a: 1\nb: [1, 2\nc: 3\n")
    assert problem.message.startswith("invalid YAML")
    assert problem.line == 2  # where the list opens: what to fix


def test_control_character_names_the_line() -> None:
    (problem,) = problems_of("a: 1\nb: x\x07y\n")
    assert problem.line == 2
    assert "0x0007" in problem.message


def test_unsafe_tags_are_refused() -> None:
    (problem,) = problems_of("a: !!python/object/apply:os.system [echo hi]\n")
    assert problem.line == 1
    assert "invalid YAML" in problem.message


def test_keys_and_dates_stay_strings() -> None:
    assert load_one("1: one\nday: 2024-01-31\n").data == {"1": "one", "day": "2024-01-31"}


def test_non_scalar_keys_are_refused() -> None:
    (problem,) = problems_of("a:\n  ? [x, y]\n  : 1\n")
    assert problem.message == "a mapping key must be a plain string"
    assert (problem.line, problem.path) == (2, "a")


# -- schema problems -----------------------------------------------------------------------


def test_valid_segment_has_no_problem() -> None:
    assert schema_problems(SEGMENT) == []


def test_unknown_key_is_named_on_its_own_line() -> None:
    text = SEGMENT.replace("        format: sha256\n", "        format: sha256\n        colum: x\n")
    ((line, path, message),) = schema_problems(text)
    assert (line, path) == (15, "spec.destinations[0].identifier.colum")
    assert message.startswith("unknown key 'colum'; allowed keys: column, format, integers, kind")


def test_missing_required_key() -> None:
    text = SEGMENT.replace("metadata:\n  name: cart\n", "metadata:\n  owner: me\n")
    assert schema_problems(text) == [(3, "metadata", "missing required key 'name'")]


def test_source_needs_exactly_one_kind() -> None:
    none = SEGMENT.replace("    csv: {path: ../data/cart.csv}\n", "    on_bad_rows: skip\n")
    assert schema_problems(none) == [
        (6, "spec.source", "exactly one of csv, ndjson, parquet, sql, members; found none")
    ]
    two = SEGMENT.replace("    csv:", "    members: [{email_hash: x}]\n    csv:")
    assert schema_problems(two) == [
        (6, "spec.source", "exactly one of csv, ndjson, parquet, sql, members; found csv, members")
    ]


def test_segment_id_or_technical_name_exactly_one() -> None:
    both = SEGMENT.replace(
        "      segment_technical_name: cart\n",
        "      segment_technical_name: cart\n      segment_id: '7'\n",
    )
    assert schema_problems(both) == [
        (
            9,
            "spec.destinations[0]",
            "exactly one of segment_id, segment_technical_name; "
            "found segment_id, segment_technical_name",
        )
    ]


def test_enum_type_and_pattern_messages() -> None:
    text = (
        SEGMENT.replace("kind: email_hash", "kind: email")
        .replace('datamart_id: "1509"', "datamart_id: 1509")
        .replace("name: cart\nspec", "name: Cart Abandoners\nspec")
    )
    assert schema_problems(text) == [
        (4, "metadata.name", "must be 1 to 128 lowercase letters, digits, '_' or '-', "
         'starting with a letter or a digit; got "Cart Abandoners" (string)'),
        (10, "spec.destinations[0].datamart_id",
         'must be a string of digits in quotes, e.g. "1509"; got 1509 (integer)'),
        (13, "spec.destinations[0].identifier.kind",
         'must be one of "user_account_id", "email_hash", "user_agent_id"; '
         'got "email" (string)'),
    ]  # fmt: skip


def test_compartment_id_goes_with_user_account_id_only() -> None:
    account = SEGMENT.replace("kind: email_hash", "kind: user_account_id")
    assert schema_problems(account) == [
        (9, "spec.destinations[0]", "compartment_id is required with identifier kind "
         "user_account_id")
    ]  # fmt: skip
    refused = SEGMENT.replace(
        "      identifier:\n", "      compartment_id: '12'\n      identifier:\n"
    )
    assert schema_problems(refused) == [
        (12, "spec.destinations[0].compartment_id",
         "compartment_id is only allowed with identifier kind user_account_id")
    ]  # fmt: skip


def test_empty_destinations_and_wrong_api_version() -> None:
    text = SEGMENT.split("  destinations:")[0] + "  destinations: []\n"
    text = text.replace("segops/v1", "segops/v2")
    assert schema_problems(text) == [
        (1, "apiVersion", 'must be "segops/v1"; got "segops/v2" (string)'),
        (8, "spec.destinations", "must not be empty"),
    ]


def test_type_message_names_both_types() -> None:
    assert schema_problems("apiVersion: segops/v1\nkind: Segment\nmetadata: []\nspec: {}\n") == [
        (3, "metadata", "expected a mapping, got a list"),
        (4, "spec", "missing required keys 'source', 'destinations'"),
    ]


CONFIG = """\
version: 1
connections:
  mics:
    platform: mediarithmics
    token_env: MICS_TOKEN
  files-moe:
    platform: files
    target: moengage
    path: out
"""


def test_valid_config_has_no_problem() -> None:
    assert schema_problems(CONFIG, "segops") == []


def test_connection_keys_depend_on_the_platform() -> None:
    text = CONFIG.replace(
        "token_env: MICS_TOKEN\n", "token_env: MICS_TOKEN\n    data_center: '02'\n"
    )
    text = text.replace("path: out\n", "path: out\n    mime_type: TEXT_CSV\n")
    assert schema_problems(text, "segops") == [
        (6, "connections.mics.data_center", "only moengage connections take this key"),
        (11, "connections.files-moe.mime_type", "mime_type is for the mediarithmics target only"),
    ]


def test_connection_required_keys_and_names() -> None:
    text = CONFIG.replace("    target: moengage\n", "").replace("  mics:", "  Mics Prod:")
    assert schema_problems(text, "segops") == [
        (3, "connections.Mics Prod", "key 'Mics Prod': must be 1 to 128 lowercase letters, "
         "digits, '_' or '-', starting with a letter or a digit"),
        (6, "connections.files-moe", "missing required key 'target'"),
    ]  # fmt: skip


def test_moengage_data_center_must_be_quoted() -> None:
    text = CONFIG + (
        "  moe:\n    platform: moengage\n    data_center: 02\n"
        "    workspace_id_env: W\n    api_key_env: K\n"
    )
    ((line, path, message),) = schema_problems(text, "segops")
    assert (line, path) == (12, "connections.moe.data_center")
    assert "in quotes" in message


def test_schema_problems_are_sorted_by_line() -> None:
    text = SEGMENT.replace("kind: Segment", "kind: Segment\nextra: 1").replace(
        "attribute: {name: email}", "attribute: {name: email, type: text}"
    )
    problems = validate_document(load_one(text), "segment")
    assert [p.line for p in problems] == sorted(p.line or 0 for p in problems)
    assert [p.path for p in problems] == ["extra", "spec.destinations[1].attribute.type"]
