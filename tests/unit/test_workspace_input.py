"""Hostile input to load_workspace: values with line breaks, special files, empty manifests,
out-of-range settings, and platform segments shared between manifests."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from segops.config.workspace import load_workspace
from segops.errors import ManifestError
from tests.unit.test_workspace import CART, CONFIG, CSV, MICS, MOE, make_workspace, segment

MOE_CONFIG = CONFIG.replace(
    "prefix: p}}\n", "prefix: p}}\n    callback: {listen: '127.0.0.1:8080'}\n"
)


def located(root: Path) -> list[tuple[str, str, str]]:
    """Return (file, key path, message) of every problem load_workspace reports."""
    with pytest.raises(ManifestError) as caught:
        _without_hanging(lambda: load_workspace(root))
    for problem in caught.value.problems:  # one problem, one line, whatever the input held
        assert str(problem).isprintable(), repr(str(problem))
    return [(p.file, p.path, p.message) for p in caught.value.problems]


def _without_hanging(call: object) -> None:
    """Run `call` in a thread: a read that blocks (a named pipe) fails the test, not the run."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(120)  # a hang guard, not a timing check: the load takes milliseconds
    assert outcome, "load_workspace blocked"
    if outcome[0] is not None:
        raise outcome[0]


# -- values with line breaks or padding --------------------------------------------------------

# (file, text to replace, replacement, key path reported). `|` block scalars keep a final
# newline: the way a trailing "\n" reaches a value without anyone typing it.
CASES = [
    ("segments/cart.yaml", "name: cart\n", "name: |\n    cart\n", "metadata.name"),
    ("segments/cart.yaml", "name: cart\n", 'name: "cart\\r\\n"\n', "metadata.name"),
    ("segments/cart.yaml", "- connection: mics", '- connection: "mics\\n"', "connection"),
    ("segments/cart.yaml", "- connection: mics", '- name: "x\\n"\n      connection: mics', "name"),
    ("segments/cart.yaml", 'datamart_id: "1509"', 'datamart_id: "1509\\n"', "datamart_id"),
    ("segments/cart.yaml", "_name: cart\n", '_name: "cart "\n', "segment_technical_name"),
    ("segments/cart.yaml", "{name: cart_7d,", '{name: "cart_7d\\n",', "segment.name"),
    ("segments/cart.yaml", "cs_id: abc123", 'cs_id: "abc123\\n"', "segment.cs_id"),
    ("segments/cart.yaml", "{name: email,", '{name: " email",', "attribute.name"),
    ("segments/cart.yaml", "column: hash", 'column: "hash\\n"', "identifier.column"),
    ("segments/cart.yaml", "{column: basket}", '{column: "basket\\t"}', "data_bag.column"),
    ("segments/cart.yaml", "../data/cart.csv", '"../data/cart.csv\\n"', "source.csv.path"),
    ("segops.yaml", "  mics:\n", '  "mics\\n":\n', 'connections["mics\\n"]'),
    ("segops.yaml", "  mics:\n", '  "mics\\u202e":\n', 'connections["mics\\u202e"]'),
    ("segops.yaml", "token_env: MICS_TOKEN", 'token_env: "MICS_TOKEN\\n"', "token_env"),
    ("segops.yaml", 'data_center: "02"', 'data_center: "02\\n"', "data_center"),
    ("segops.yaml", "path: out/moe/", 'path: "out/moe\\n"', "connections.files-moe.path"),
    ("segops.yaml", "path: out/moe/", "path: ' out/moe'", "connections.files-moe.path"),
    ("segops.yaml", "{bucket: bkt,", '{bucket: "bkt\\n",', "publish.s3.bucket"),
    ("segops.yaml", "prefix: p}", 'prefix: "p\\n"}', "publish.s3.prefix"),
    ("segops.yaml", "'127.0.0.1:8080'", '"127.0.0.1:8080\\n"', "callback.listen"),
    ("segops.yaml", "'127.0.0.1:8080'", "'127.0.0.1:65536'", "callback.listen"),
    ("segops.yaml", '"more/*.yml"]', '"more/*.yml\\n"]', "manifests[1]"),
    ("segops.yaml", "version: 1\n", "version: 1\nstate:\n  path: |\n    .segops\n", "state.path"),
    ("segops.yaml", "version: 1\n", 'version: 1\nengine: {memory_limit: "1GB\\n"}\n', "memory"),
]


@pytest.mark.parametrize(("file", "old", "new", "key"), CASES)
def test_a_value_with_a_line_break_or_padding_is_refused_where_it_is(
    tmp_path: Path, file: str, old: str, new: str, key: str
) -> None:
    texts = {"segops.yaml": MOE_CONFIG, "segments/cart.yaml": CART}
    assert old in texts[file]
    texts[file] = texts[file].replace(old, new, 1)
    root = make_workspace(tmp_path, {"segments/cart.yaml": texts["segments/cart.yaml"]})
    (root / "segops.yaml").write_text(texts["segops.yaml"])
    found = located(root)
    assert [f for f, _, _ in found] == [file], found
    ((_, path, message),) = found
    assert key in path
    assert "got " in message or "key " in message  # the refused value (or key) is quoted


def test_the_unchanged_cases_load(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART})
    (root / "segops.yaml").write_text(MOE_CONFIG)
    assert [s.name for s in load_workspace(root).segments] == ["cart"]


# -- files that are not regular files ------------------------------------------------------


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def _socket(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    here = Path.cwd()
    os.chdir(path.parent)  # a relative address: the full path may pass the 108-byte limit
    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(path.name)
    finally:
        os.chdir(here)


@pytest.mark.parametrize(
    ("make", "file", "says"),
    [
        (lambda r: _fifo(r / "segments/pipe.yaml"), "segments/pipe.yaml", "a named pipe"),
        (lambda r: _fifo(r / "more/pipe.yml"), "more/pipe.yml", "a named pipe"),
        (lambda r: _socket(r / "more/s.yml"), "more/s.yml", "a socket"),
    ],
    ids=["fifo", "fifo-second-glob", "socket"],
)
def test_a_manifest_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, make: object, file: str, says: str
) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART})
    (root / "more").mkdir(exist_ok=True)
    make(root)  # type: ignore[operator]
    assert located(root) == [(file, "", f"is {says}, not a regular file: segops reads only files")]


def test_a_segops_yaml_that_is_a_named_pipe_is_refused(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART})
    (root / "segops.yaml").unlink()
    _fifo(root / "segops.yaml")
    ((file, _, message),) = located(root)
    assert file == "segops.yaml"
    assert message == "is a named pipe, not a regular file: segops reads only files"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: _fifo(p), "a named pipe"),
        (lambda p: p.mkdir(parents=True), "a folder"),
        (lambda p: _socket(p), "a socket"),
    ],
    ids=["fifo", "folder", "socket"],
)
def test_a_source_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, make: object, says: str
) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART.replace("cart.csv", "feed.csv")})
    make(root / "data/feed.csv")  # type: ignore[operator]
    ((file, path, message),) = located(root)
    assert (file, path) == ("segments/cart.yaml", "spec.source.csv.path")
    assert message == f"data/feed.csv: is {says}, not a regular file: segops reads only files"


# -- manifests without a document --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "# only a comment\n", "---\n", "# a\n---\n# b\n---\n", "\n\n   \n", "--- # x\n..."],
    ids=["empty", "comment", "separator", "comments-and-separators", "blank", "end-marker"],
)
def test_a_manifest_without_a_document_next_to_valid_ones_is_reported(
    tmp_path: Path, text: str
) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART, "segments/gone.yaml": text})
    assert located(root) == [
        ("segments/gone.yaml", "", "holds no Segment document: write one, or delete the file")
    ]


def test_an_empty_document_beside_a_segment_in_one_file_is_fine(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": "---\n" + CART + "---\n"})
    assert [s.name for s in load_workspace(root).segments] == ["cart"]


# -- engine settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "valid"),
    [
        ("64MB", True),
        ("0.5GB", True),
        ("1.25GB", True),
        ("32TiB", True),
        ("35184372088832B", True),
        ("63MB", False),
        ("61MiB", False),
        ("0B", False),
        ("35184372088833B", False),
        ("33TiB", False),
        ("99999999TB", False),
        ("9" * 400 + "TB", False),
    ],
)
def test_memory_limit_must_be_in_range(tmp_path: Path, limit: str, valid: bool) -> None:
    config = CONFIG.replace("version: 1\n", f"version: 1\nengine: {{memory_limit: '{limit}'}}\n")
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART}, config)
    if valid:
        assert load_workspace(root).engine.memory_limit == limit
    else:
        message = f"must be a size from 64MB to 32TiB; got {limit!r}"
        assert located(root) == [("segops.yaml", "engine.memory_limit", message)]


# -- platform segments shared between manifests ------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        (MICS, MICS, "connection 'mics', datamart_id '1', segment_id '2'"),
        (
            MICS.replace('segment_id: "2"', "segment_technical_name: vip"),
            MICS.replace('segment_id: "2"', "segment_technical_name: vip"),
            "connection 'mics', datamart_id '1', segment_technical_name 'vip'",
        ),
        (MOE, MOE, "connection 'moe', name 's'"),
        (
            MOE.replace("{name: s}", "{name: s, cs_id: c1}"),
            MOE.replace("{name: s}", "{name: t, cs_id: c1}"),
            "cs_id 'c1'",
        ),
    ],
    ids=["segment-id", "technical-name", "moengage-name", "moengage-cs-id"],
)
def test_a_shared_platform_segment_is_named(
    tmp_path: Path, first: str, second: str, shared: str
) -> None:
    root = make_workspace(
        tmp_path, {"segments/a.yaml": segment("a", first), "segments/b.yaml": segment("b", second)}
    )
    ((file, path, message),) = located(root)
    assert (file, path) == ("segments/b.yaml", "spec.destinations[0]")
    assert message.endswith(f"(segments/a.yaml:9): {shared}")


@pytest.mark.parametrize(
    "glob", ["***", "a**b/*.yaml", "segments/x**.yaml", ".", "a" * 300 + "/*.yml", "b" * 300]
)
def test_a_glob_pathlib_refuses_is_a_problem_not_a_traceback(tmp_path: Path, glob: str) -> None:
    config = CONFIG.replace('"more/*.yml"]', f'"{glob}"]')
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART}, config)
    ((file, path, message),) = located(root)
    assert (file, path) == ("segops.yaml", "manifests[1]")
    assert message.startswith(f"{glob!r} is not a glob segops can use")


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("state: {path: data/cart.csv}", "state.path"),
        ("state: {path: segops.yaml}", "state.path"),
        ("state: {path: data/cart.csv/deeper}", "state.path"),
    ],
)
def test_a_state_folder_that_is_a_file_is_refused(tmp_path: Path, setting: str, key: str) -> None:
    config = CONFIG.replace("version: 1\n", f"version: 1\n{setting}\n")
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART}, config)
    ((file, path, message),) = located(root)
    assert (file, path) == ("segops.yaml", key)
    assert message.endswith("exists and is not a folder")


@pytest.mark.parametrize("output", ["data/cart.csv", "segments/cart.yaml", "data/cart.csv/x/y"])
def test_a_files_output_folder_that_is_a_file_is_refused(tmp_path: Path, output: str) -> None:
    root = make_workspace(
        tmp_path, {"segments/cart.yaml": CART}, CONFIG.replace("path: out/moe/", f"path: {output}")
    )
    ((file, path, message),) = located(root)
    assert (file, path) == ("segops.yaml", "connections.files-moe.path")
    assert message.endswith("exists and is not a folder")


@pytest.mark.parametrize("setting", ["state: {path: NAME}", "files"])
def test_a_folder_name_too_long_for_the_file_system_is_a_problem(
    tmp_path: Path, setting: str
) -> None:
    name = "n" * 300
    if setting == "files":
        config = CONFIG.replace("path: out/moe/", f"path: {name}")
    else:
        config = CONFIG.replace(
            "version: 1\n", "version: 1\n" + setting.replace("NAME", name) + "\n"
        )
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART}, config)
    ((file, path, message),) = located(root)
    assert file == "segops.yaml" and path.endswith("path")
    assert message == "cannot be used: File name too long"


@pytest.mark.parametrize("name", ["a\nb.yaml", "tab\t.yaml", "rlo\u202e.yaml"])
def test_a_manifest_file_name_with_a_line_break_is_refused(tmp_path: Path, name: str) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART, f"segments/{name}": CART})
    ((file, path, message),) = located(root)
    assert (file, path) == ("segops.yaml", "manifests[0]")
    assert message.startswith("matches ") and "rename it" in message


@pytest.mark.parametrize("name", ["a\nb.csv", "bell\a.csv"])
def test_a_source_reached_through_a_link_to_an_odd_name_is_refused(
    tmp_path: Path, name: str
) -> None:
    root = make_workspace(tmp_path, {"segments/cart.yaml": CART})
    (root / "data" / name).write_text(CSV)
    (root / "data/cart.csv").unlink()
    (root / "data/cart.csv").symlink_to(name)
    ((file, path, message),) = located(root)
    assert (file, path) == ("segments/cart.yaml", "spec.source.csv.path")
    assert message.endswith("rename it without line breaks")
