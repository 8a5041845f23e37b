"""`integers: true`: where the manifest may accept whole numbers as identifiers, and where not."""

from __future__ import annotations

import pytest

from segops.model import IdentifierKind
from tests.unit.test_manifest import schema_problems

MICS = """\
apiVersion: segops/v1
kind: Segment
metadata: {{name: s}}
spec:
  source: {{members: [{{id: x}}]}}
  destinations:
    - connection: c
      datamart_id: "1"
      segment_technical_name: s
      identifier: {identifier}
"""
MOE = """\
apiVersion: segops/v1
kind: Segment
metadata: {{name: s}}
spec:
  source: {{members: [{{id: x}}]}}
  destinations:
    - connection: c
      segment: {{name: s}}
      attribute: {attribute}
"""


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("{kind: user_account_id, integers: true}", None),
        ("{kind: user_account_id, integers: false}", None),
        ("{kind: email_hash, integers: false}", None),
        ("{kind: email_hash, integers: true}", "only allowed with identifier kind user_account_id"),
        ("{kind: user_agent_id, integers: true}", "only allowed with identifier kind"),
        ("{kind: user_account_id, format: md5, integers: true}", "cannot go with a hash format"),
        ("{kind: user_account_id, integers: 'yes'}", "expected true or false"),
    ],
)
def test_identifier_integers(identifier: str, message: str | None) -> None:
    text = MICS.format(identifier=identifier)
    if "user_account_id" in identifier:
        text += '      compartment_id: "12"\n'
    problems = schema_problems(text)
    if message is None:
        assert problems == []
    else:
        assert any(message in text and line == 10 for line, _, text in problems), problems


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("{name: ID, integers: true}", None),
        ("{name: ID, type: string, integers: true}", None),
        ("{name: ID, type: double, integers: true}", "type double takes numbers already"),
        ("{name: ID, format: sha256, integers: true}", "cannot go with a hash format"),
    ],
)
def test_attribute_integers(attribute: str, message: str | None) -> None:
    problems = schema_problems(MOE.format(attribute=attribute))
    if message is None:
        assert problems == []
    else:
        assert any(message in text for _, _, text in problems), problems


@pytest.mark.parametrize("platform", ["mediarithmics", "moengage"])
def test_the_platforms_read_the_key_into_the_identifier(platform: str) -> None:
    from segops.destinations.registry import platform_spec

    spec = platform_spec(platform)
    assert spec is not None
    if platform == "mediarithmics":
        raw = {"connection": "c", "datamart_id": "1", "segment_technical_name": "s"}
        with_key = {**raw, "identifier": {"kind": "user_account_id", "integers": True}}
        without = {**raw, "identifier": {"kind": "user_account_id"}}
    else:
        raw = {"connection": "c", "segment": {"name": "s"}}
        with_key = {**raw, "attribute": {"name": "ID", "integers": True}}
        without = {**raw, "attribute": {"name": "ID"}}
    assert spec.destination(with_key).identifier.integers is True
    assert spec.destination(without).identifier.integers is False
    assert spec.destination(with_key).identifier.kind in set(IdentifierKind)
