"""Run the steps of one documentation page in a temporary folder (see test_snippets.py)."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from typer.testing import CliRunner

from segops.cli import app
from tests.docs.markdown import Block, Hidden, Step

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests"  # the bundled example workspace
YAML = frozenset({"yaml", "yml"})
SHELL = frozenset({"sh", "bash", "shell", "console"})
DATA = frozenset({"csv", "ndjson", "jsonl"})  # workspace data: needs a `file:` marker
PYTHONS = frozenset({"python", "python3", ".venv/bin/python"})
NO_MANIFEST = "no manifest file matches"

_EXIT = re.compile(r"(?:^|\s)#.*?\bexit\s+(\d+)\b")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_MAKE_TARGET = re.compile(r"^([A-Za-z0-9_.-]+):", re.MULTILINE)


@dataclass
class Tally:
    """What the page runs checked, for the summary test and the curious reader."""

    validated: list[str] = field(default_factory=list)  # yaml blocks `segops validate` passed
    commands: list[str] = field(default_factory=list)  # segops command lines run
    blocks_run: list[str] = field(default_factory=list)  # sh / console blocks run
    make: list[str] = field(default_factory=list)  # make commands whose target exists
    files: list[str] = field(default_factory=list)  # data blocks written into a workspace
    unchecked: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)


@dataclass
class Command:
    line: str  # as written, after port substitution
    where: str
    output: list[str] | None = None  # the lines a console block shows after it


class PageRun:
    """The workspace a page's steps act on, and the commands they run there."""

    def __init__(self, page: str, root: Path, tally: Tally) -> None:
        self.page, self.root, self.tally = page, root, tally
        self.cwd = root / "example"
        shutil.copytree(
            EXAMPLE, self.cwd, ignore=shutil.ignore_patterns(".segops", "out", "*.segplan")
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEGOPS")}
        self.ports: dict[str, int] = {}  # port written in the page -> port really used
        self.emulators: list[subprocess.Popen[str]] = []
        self.unvalidated: list[str] = []  # yaml blocks written, waiting for a Segment
        self.workspaces = 0

    # -- steps ---------------------------------------------------------------------------

    def step(self, step: Step) -> None:
        if isinstance(step, Hidden):
            if step.key == "run":
                self.run(Command(self.ports_of(step.value), step.where))
            else:
                self.write(step.value, self.ports_of(step.text), step.where)
            return
        if step.marker and step.marker[0] == "not-checked":
            if not step.marker[1]:
                fail(f"{step.where}: <!-- not-checked: --> needs a reason")
            self.tally.unchecked.append((step.where, step.marker[1]))
        elif step.lang in YAML:
            self.yaml_block(step)
        elif step.lang in SHELL:
            self.shell_block(step)
        elif step.marker and step.marker[0] == "file":
            self.write(step.marker[1], self.ports_of(step.text), step.where)
        elif step.lang in DATA:
            fail(
                f"{step.where}: a {step.lang} block needs <!-- file: PATH --> or "
                "<!-- not-checked: REASON --> on the line before"
            )
        elif step.marker:
            fail(
                f"{step.where}: <!-- {step.marker[0]}: --> does not apply to a "
                f"{step.lang or 'plain'} block"
            )

    def yaml_block(self, block: Block) -> None:
        text = self.ports_of(block.text)
        if block.marker and block.marker[0] == "file":
            self.write(block.marker[1], text, block.where)
        elif block.marker and block.marker[0] == "fragment":
            self.merge(block.marker[1], text, block.where)
        elif block.marker:
            fail(f"{block.where}: unknown marker <!-- {block.marker[0]}: -->")
        elif re.search(r"^version:", text, re.MULTILINE):
            self.new_workspace(block.where)
            self.write("segops.yaml", text, block.where)
        elif re.search(r"^kind:\s*Segment\s*$", text, re.MULTILINE):
            self.write(self.manifest_path(text, block.where), text, block.where)
        else:
            fail(
                f"{block.where}: a yaml block that is neither a whole segops.yaml (`version:`) "
                "nor a Segment (`kind: Segment`): mark it <!-- fragment: segops.yaml --> or "
                "<!-- not-checked: REASON -->"
            )

    def shell_block(self, block: Block) -> None:
        for command in commands_of(self.ports_of(block.text), block.lang, block.where):
            self.run(command)
        self.tally.blocks_run.append(block.where)

    # -- workspace files -----------------------------------------------------------------

    def new_workspace(self, where: str) -> None:
        """A whole segops.yaml starts a workspace of its own in a new empty folder."""
        self.check_validated()
        self.workspaces += 1
        self.cwd = self.root / f"ws-{self.workspaces}"
        self.cwd.mkdir()

    def write(self, relpath: str, text: str, where: str) -> None:
        path = self.cwd / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            self.unvalidated.append(where)
            self.validate()
        else:
            self.tally.files.append(where)

    def merge(self, target: str, text: str, where: str) -> None:
        """Merge a fragment's keys into the workspace's segops.yaml (mappings merge by key)."""
        if target != "segops.yaml":
            fail(f"{where}: fragments of {target!r}: only segops.yaml is supported")
        path = self.cwd / "segops.yaml"
        if not path.exists():
            fail(f"{where}: a segops.yaml fragment, but the workspace has no segops.yaml")
        fragment = yaml.safe_load(text)
        if not isinstance(fragment, dict):
            fail(f"{where}: a segops.yaml fragment must be a mapping of top-level keys")
        merged = deep_merge(yaml.safe_load(path.read_text()), fragment)
        path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
        self.segops("fmt", "segops.yaml")  # canonical again, so a later `fmt --check` passes
        self.unvalidated.append(where)
        self.validate()

    def manifest_path(self, text: str, where: str) -> str:
        """Return where a Segment block goes: a file the workspace's `manifests` globs match."""
        try:
            name = next(yaml.safe_load_all(text))["metadata"]["name"]
        except Exception:  # segops validate names the problem better
            name = f"doc-{where.rsplit(':', 1)[1]}"
        config = yaml.safe_load((self.cwd / "segops.yaml").read_text()) or {}
        pattern = (config.get("manifests") or ["manifests/**/*.yaml"])[0]
        path = pattern.replace("**/", "").replace("*", str(name))
        if any(c in path for c in "*?["):
            fail(f"{where}: cannot place a Segment under the glob {pattern!r}")
        return str(path)

    def validate(self) -> None:
        code, out, err = self.segops("validate")
        if code != 0 and NO_MANIFEST in err:
            return  # a segops.yaml on its own: validated with the page's first Segment
        if code != 0:
            fail(f"{self.unvalidated[-1]}: segops validate exited {code}:\n{err}{out}")
        self.tally.validated.extend(self.unvalidated)
        self.unvalidated.clear()

    def check_validated(self) -> None:
        if self.unvalidated:
            fail(
                f"{self.unvalidated[0]}: this segops.yaml was never validated: the page shows "
                "no Segment for it (add one, or a hidden <!-- file: segments/x.yaml ... -->)"
            )

    # -- commands ------------------------------------------------------------------------

    def run(self, command: Command) -> None:
        found = _EXIT.search(command.line)
        expected = int(found.group(1)) if found else 0
        parts = command.line.split(" && ")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            self.run_one(part, command, expected if last else 0, command.output if last else None)

    def run_one(self, text: str, command: Command, expected: int, output: list[str] | None) -> None:
        words = shlex.split(text, comments=True)
        assigned: dict[str, str] = {}
        while words and _ASSIGNMENT.match(words[0]):
            key, _, value = words.pop(0).partition("=")
            assigned[key] = value
        if not words:
            self.env.update(assigned)
            return
        program, args = words[0], words[1:]
        if program == "segops":
            self.run_segops(args, command, expected, output)
        elif program == "make":
            self.check_make(args, command)
        elif program == "export":
            self.env.update(dict(word.partition("=")[::2] for word in args))
        elif program == "cd":
            self.cwd = (self.cwd / args[0]).resolve()
            assert self.cwd.is_dir(), f"{command.where}: cd {args[0]}: no such folder"
        elif program == "mkdir":
            for name in (a for a in args if not a.startswith("-")):
                (self.cwd / name).mkdir(parents=True, exist_ok=True)
        elif program in PYTHONS and args[:1] == ["-m"] and args[1].startswith("emulators."):
            self.start_emulator(args[1], args[2:], assigned, command)
        else:
            fail(
                f"{command.where}: cannot run `{text.strip()}`: only segops, make, export, cd, "
                "mkdir and the emulators run; mark the block <!-- not-checked: REASON -->"
            )

    def run_segops(
        self, args: list[str], command: Command, expected: int, output: list[str] | None
    ) -> None:
        redirect = stdin = None
        if ">" in args:
            at = args.index(">")
            redirect, args = args[at + 1], args[:at] + args[at + 2 :]
        if "<" in args:  # standard input from a file of the workspace
            at = args.index("<")
            stdin = (self.cwd / args[at + 1]).read_text(encoding="utf-8")
            args = args[:at] + args[at + 2 :]
        code, out, err = self.segops(*args, input=stdin)
        if code != expected:
            fail(
                f"{command.where}: `{command.line}` exited {code}, the page says {expected}\n"
                f"--- stdout\n{out}--- stderr\n{err}"
            )
        if redirect is not None:
            (self.cwd / redirect).write_text(out, encoding="utf-8")
        if output is not None:
            check_output(output, out + err, command)
        self.tally.commands.append(f"{command.where}: {command.line}")

    def segops(self, *args: str, input: str | None = None) -> tuple[int, str, str]:
        """Run the segops CLI in-process in the page's folder and environment."""
        with self.environment():
            result = CliRunner().invoke(app, list(args), input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    @contextmanager
    def environment(self) -> Iterator[None]:
        saved_env, saved_cwd = dict(os.environ), Path.cwd()
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.cwd)
        try:
            yield
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)

    def check_make(self, args: list[str], command: Command) -> None:
        targets = set(_MAKE_TARGET.findall((REPO / "Makefile").read_text()))
        wanted = [a for a in args if not a.startswith("-") and "=" not in a]
        missing = [t for t in wanted if t not in targets]
        assert not missing, f"{command.where}: no Makefile target {missing}"
        self.tally.make.append(f"{command.where}: {command.line}")

    # -- emulators -----------------------------------------------------------------------

    def start_emulator(
        self, module: str, args: list[str], assigned: dict[str, str], command: Command
    ) -> None:
        """Start an emulator as the page says, on a free port; stopped at the end of the page.

        The port written in the page is replaced by a free one, in the command and in every
        later block of the page (`127.0.0.1:PORT`, `localhost:PORT`).
        """
        args = [a for a in args if a != "&"]
        if "--port" in args:
            at = args.index("--port") + 1
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                free = probe.getsockname()[1]
            self.ports[args[at]] = free
            args[at] = str(free)
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=self.cwd,  # files the emulator loads are the page's
            env={**self.env, **assigned, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.emulators.append(process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        first = process.stdout.readline() if ready else ""
        if " emulator on " not in first:
            rest = "" if process.poll() is None else process.stdout.read()
            fail(f"{command.where}: `{command.line}` did not start:\n{first}{rest}")
        self.tally.commands.append(f"{command.where}: {command.line}")

    def ports_of(self, text: str) -> str:
        for written, used in self.ports.items():
            for host in ("127.0.0.1", "localhost"):
                text = text.replace(f"{host}:{written}", f"127.0.0.1:{used}")
        return text

    def close(self) -> None:
        for process in self.emulators:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # the emulators stop cleanly on Ctrl-C
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()


def fail(message: str) -> NoReturn:
    """Fail the page's test with `message` alone: the traceback says nothing more."""
    pytest.fail(message, pytrace=False)


def commands_of(text: str, lang: str, where: str) -> list[Command]:
    """Return the commands of a shell block; in a console block, with the output shown."""
    lines = text.replace("\\\n", " ").splitlines()
    found: list[Command] = []
    for line in lines:
        if lang == "console" and not line.startswith("$ "):
            if not found:
                fail(f"{where}: a console block starts with `$ COMMAND`")
            assert found[-1].output is not None
            found[-1].output.append(line)
            continue
        command = line.removeprefix("$ ").strip()
        if command and not command.startswith("#"):
            found.append(Command(command, where, [] if lang == "console" else None))
    return found


def check_output(shown: list[str], actual: str, command: Command) -> None:
    """Check that the output a console block shows is the real output.

    Lines must match exactly (trailing spaces aside) and in order; a line `...` stands for
    any number of lines.
    """
    real = [line.rstrip() for line in actual.splitlines()]
    while shown and not shown[-1].strip():
        shown = shown[:-1]
    position, skipping = 0, False
    for line in shown:
        if line.strip() == "...":
            skipping = True
            continue
        want = line.rstrip()
        if skipping:
            while position < len(real) and real[position] != want:
                position += 1
        if position >= len(real) or real[position] != want:
            fail(
                f"{command.where}: `{command.line}` does not print {want!r} where the page "
                f"shows it. Real output:\n" + "\n".join(real)
            )
        position, skipping = position + 1, False
    if position < len(real) and not skipping:
        fail(
            f"{command.where}: `{command.line}` prints more than the page shows (end the block "
            "with `...` if that is intended). Real output:\n" + "\n".join(real)
        )


def deep_merge(base: Any, extra: Any) -> Any:
    """Return `base` with `extra` merged in: mappings key by key, anything else replaced.

    A mapping that names another `backend` (`state: {backend: s3, ...}` over a local state)
    replaces the old one whole: the keys of one backend mean nothing to another.
    """
    if (
        isinstance(base, dict)
        and isinstance(extra, dict)
        and extra.get("backend", base.get("backend")) == base.get("backend")
    ):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = deep_merge(base.get(key), value)
        return merged
    return extra
