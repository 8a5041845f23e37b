"""Messages say what to fix: where a YAML construct began, the offending setting (quoted),
the allowed range; never a member value."""

from __future__ import annotations

import pytest

from segops.config import documents
from segops.config.documents import LOADERS, load_documents
from segops.config.schemas import validate_document
from segops.errors import ManifestError

SEGMENT = """\
apiVersion: segops/v1
kind: Segment
metadata:
  name: cart
spec:
  source:
    members: [{email: a@example.com}]
  destinations:
    - connection: moe
      segment: {name: cart_7d}
      attribute: {name: email}
      expiry_days: 30
"""
CONFIG = """\
version: 1
engine: {threads: 2}
connections:
  mics:
    platform: mediarithmics
    token_env: MICS_TOKEN
    timeout: 30
"""


@pytest.fixture(autouse=True, params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test with libyaml and with the pure-Python parser: they must agree."""
    monkeypatch.setattr(documents, "loader_name", request.param)


def syntax_problem(text: str) -> tuple[int | None, str]:
    with pytest.raises(ManifestError) as caught:
        load_documents(text.encode(), "m.yaml")
    (problem,) = caught.value.problems
    return problem.line, problem.message


@pytest.mark.parametrize(
    ("text", "line", "said"),
    [
        ("a: 1\nb: [1, 2,\n  3\nc: 4\n", 2, "list opened with `[` here is not closed: add `]`"),
        ("a: {x: 1,\n  y: 2\n\nb: 3\n", 1, "mapping opened with `{` here is not closed"),
        ('a: "abc\nb: 1\nc: 2\n', 1, 'quoted with " here is not closed: add the closing "'),
        ("a: 1\nb: 'abc\nc: 1\n", 2, "quoted with ' here is not closed"),
        ("top:\n  a: 1\n b: 2\n", 3, "keys of the mapping that starts at line 1"),
    ],
    ids=["bracket", "brace", "double-quote", "single-quote", "indentation"],
)
def test_syntax_error_names_the_line_to_fix_in_plain_words(text: str, line: int, said: str) -> None:
    found_line, message = syntax_problem(text)
    assert found_line == line
    assert message.startswith("invalid YAML: ")
    assert said in message


def test_an_unclosed_bracket_says_where_the_parser_gave_up() -> None:
    _, message = syntax_problem("a: 1\nb: [1, 2,\n  3\nc: 4\n")
    assert "reads on to line 4" in message


@pytest.mark.parametrize(
    ("text", "line", "said", "caret"),
    [
        ("a: b: c\n", 1, "put a value that holds `: ` in quotes", "  1 | a: b: c\n    |     ^"),
        ("a:\n\tb: 1\n", 2, "a tab: YAML indents with spaces only", "    | ^"),
        ("a: `b`\n", 1, "cannot start with '`': put the value in quotes", "    |    ^"),
        ("a: 1\nfoo\nb: 2\n", 2, "not `key: value`: add the colon", "  2 | foo\n    | ^"),
        ("a:\n  - 1\n b: 2\n", 3, "does not line up", "  3 |  b: 2\n    |  ^"),
        ("a: 1\n- b\n", 2, "a list item where the mapping", "  2 | - b\n    | ^"),
        ("a: *x\n", 1, "before an anchor (`&name`) defines it", "    |    ^"),
    ],
)
def test_common_syntax_errors_are_said_plainly_with_a_caret(
    text: str, line: int, said: str, caret: str
) -> None:
    found_line, message = syntax_problem(text)
    assert found_line == line
    assert said in message
    assert message.endswith(caret)


def problems(text: str, schema: str) -> list[tuple[str, str]]:
    (doc,) = load_documents(text.encode(), "m.yaml")
    return [(p.path, p.message) for p in validate_document(doc, schema)]


@pytest.mark.parametrize(
    ("old", "new", "path", "quoted"),
    [
        ("name: cart\n", 'name: "cart\\n"\n', "metadata.name", '"cart\\n"'),
        ("name: cart\n", "name: |\n    cart\n", "metadata.name", '"cart\\n"'),
        ("name: cart\n", "name: Cart\n", "metadata.name", '"Cart"'),
        ("connection: moe", "connection: 'moe '", "spec.destinations[0].connection", '"moe "'),
        ("{name: cart_7d}", '{name: "cart_7d\\r\\n"}', "spec.destinations[0].segment.name",
         '"cart_7d\\r\\n"'),
        ("{name: email}", '{name: "\\temail"}', "spec.destinations[0].attribute.name",
         '"\\temail"'),
    ],
    ids=["newline", "block-scalar", "uppercase", "trailing-space", "crlf", "tab"],
)  # fmt: skip
def test_a_refused_name_is_quoted_with_its_invisible_characters_shown(
    old: str, new: str, path: str, quoted: str
) -> None:
    ((where, message),) = problems(SEGMENT.replace(old, new), "segment")
    assert where == path
    assert message.endswith(f"; got {quoted} (string)")


@pytest.mark.parametrize(
    ("schema", "old", "new", "path", "message"),
    [
        ("segment", "expiry_days: 30", "expiry_days: 0", "spec.destinations[0].expiry_days",
         "must be at least 1; got 0 (integer)"),
        ("segment", "expiry_days: 30", "expiry_days: -5", "spec.destinations[0].expiry_days",
         "must be at least 1; got -5 (integer)"),
        ("segment", "expiry_days: 30", "expiry_days: 2147483648",
         "spec.destinations[0].expiry_days",
         "must be at most 2,147,483,647; got 2147483648 (integer)"),
        ("segops", "threads: 2", "threads: 100000", "engine.threads",
         "must be at most 1,024; got 100000 (integer)"),
        ("segops", "threads: 2", "threads: 0", "engine.threads",
         "must be at least 1; got 0 (integer)"),
        ("segops", "timeout: 30", "timeout: 1e6", "connections.mics.timeout",
         'expected a number, got "1e6" (string)'),
        ("segops", "timeout: 30", "timeout: 1.0e+6", "connections.mics.timeout",
         "must be at most 3,600; got 1000000.0 (number)"),
        ("segops", "timeout: 30", "timeout: 0", "connections.mics.timeout",
         "must be more than 0; got 0 (integer)"),
        ("segops", "threads: 2", "threads: 2.0", "engine.threads",
         "expected an integer, got 2.0 (number)"),
        ("segment", "expiry_days: 30", "expiry_days: 30.0", "spec.destinations[0].expiry_days",
         "expected an integer, got 30.0 (number)"),
        ("segment", "expiry_days: 30", "expiry_days: true", "spec.destinations[0].expiry_days",
         "expected an integer, got true (boolean)"),
    ],
)  # fmt: skip
def test_an_out_of_range_number_names_the_range_and_the_value(
    schema: str, old: str, new: str, path: str, message: str
) -> None:
    text = (SEGMENT if schema == "segment" else CONFIG).replace(old, new)
    assert problems(text, schema) == [(path, message)]


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", ".Inf"])
@pytest.mark.parametrize(
    ("schema", "old", "new"),
    [
        ("segops", "timeout: 30", "timeout: VALUE"),
        ("segops", "threads: 2", "threads: VALUE"),
        ("segops", "threads: 2", "threads: 2}\nsafety: {max_removal_fraction: VALUE"),
        ("segment", "expiry_days: 30", "expiry_days: VALUE"),
    ],
    ids=["timeout", "threads", "fraction", "expiry_days"],
)
def test_nan_and_infinity_are_refused_everywhere_a_number_goes(
    value: str, schema: str, old: str, new: str
) -> None:
    text = (SEGMENT if schema == "segment" else CONFIG).replace(old, new.replace("VALUE", value))
    ((_, message),) = problems(text, schema)
    assert message.startswith(("expected a finite number, got ", "expected an integer, got "))
    assert message.endswith(value.lower())


@pytest.mark.parametrize(
    "member",
    ["[a@example.com]", "[[secret@example.com]]", ".nan", "[.inf]", "-.inf"],
)
def test_a_refused_member_value_is_never_quoted(member: str) -> None:
    text = SEGMENT.replace("{email: a@example.com}", "{email: " + member + "}")
    found = problems(text, "segment")
    assert found and all(path.startswith("spec.source.members[0]") for path, _ in found)
    for _, message in found:
        assert "example.com" not in message and "nan" not in message and "inf" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://user:s3cr3t-pw@api.example.com",
        "https://s3cr3t-pw@api.example.com/v1",
        "http://user:s3cr3t-pw@127.0.0.1:8080\n",
        "ftp://user:s3cr3t-pw@host",
    ],
)
def test_a_url_with_credentials_is_refused_without_showing_them(url: str) -> None:
    text = CONFIG.replace("timeout: 30", f"base_url: {url!r}".replace("\n", "\\n"))
    text = text.replace("base_url: '", 'base_url: "').replace("'\n", '"\n')
    ((path, message),) = problems(text, "segops")
    assert path == "connections.mics.base_url"
    assert "user:password@" in message and "s3cr3t-pw" not in message and "***@" in message
