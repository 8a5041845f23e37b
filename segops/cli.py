"""The segops command line: parse options, call segops.operations, print, set the exit code.

Exit codes: 0 success (or no changes), 1 error, 2 changes present (plan --detailed-exitcode).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from segops._fs import PRIVATE_DIR, remove_stale_scratch, scratch_name
from segops._text import plural
from segops.crash import report_crash
from segops.errors import GuardError, SegopsError, UsageError
from segops.ui.interrupt import cleanup, interrupted, termination
from segops.version import version as segops_version

# Start-up stays light: `segops --version` and `--help` must answer in well under 0.15 s, so
# the stages (DuckDB, httpx, jsonschema, boto3, rich...) are imported inside the commands
# that use them. tests/cli/test_startup.py keeps it so.
if TYPE_CHECKING:
    from segops.destinations import ApplyResult
    from segops.engine.interface import MemberEngine
    from segops.model import Plan
    from segops.operations import Context
    from segops.planning.selection import Selection
    from segops.ui.events import EventStream
    from segops.ui.session import Session

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_GUARD = 0, 1, 2, 3

SegmentOption = Annotated[
    list[str] | None,
    typer.Option(
        "--segment", metavar="GLOB", help="Only segments matching this glob (repeatable)."
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude", metavar="GLOB", help="Leave out segments matching this glob (repeatable)."
    ),
]
TargetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="Only destinations whose address (SEGMENT.NAME) matches this glob (repeatable).",
    ),
]
DestroyOption = Annotated[
    bool,
    typer.Option(
        "--destroy",
        help="Destroy every selected destination in the state (members removed); the safety "
        "guards apply.",
    ),
]
ReplaceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--replace",
        help="Send the whole desired membership of this destination again, to repair drift "
        "(repeatable).",
    ),
]
ChangedSinceOption = Annotated[
    str | None,
    typer.Option(
        "--changed-since",
        metavar="GIT_REF",
        help="Only segments whose manifest or source data changed since this git ref.",
    ),
]
ArtifactOption = Annotated[
    str | None,
    typer.Option(
        "--artifact",
        metavar="TEXT",
        help="With --format markdown: where the full plan is (Markdown text: a URL, an "
        "artifact name).",
    ),
]
AllowNewStateOption = Annotated[
    bool,
    typer.Option(
        "--allow-new-state",
        help="state.json is gone but traces of it remain: start a new state anyway (apply "
        "moves the traces to the state folder's abandoned/). See `segops state recover` first.",
    ),
]
ShowIdentifiersOption = Annotated[
    bool,
    typer.Option(
        "--show-identifiers",
        help="With --format markdown: a masked sample of 5 member identifiers "
        "per destination (personal data: only where the comment's readers may see it).",
    ),
]


class _Interrupted(Exception):
    """Ctrl-C ended a command (see segops.ui.interrupt)."""


class _Group(TyperGroup):
    """Report usage errors with exit code 1, keeping 2 for "changes present"; turn any
    other exception into one line and a crash report, never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        given = kwargs.get("args", args[0] if args else None)
        argv = list(sys.argv[1:] if given is None else given)
        kwargs["args"], args = self.hoisted(argv), ()
        try:
            code = super().main(*args, **kwargs)
        except TyperException as exc:  # usage errors: bad option, missing argument...
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                typer.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(EXIT_ERROR)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(EXIT_ERROR)
        except (KeyboardInterrupt, _Interrupted):  # Ctrl-C before apply sent anything
            message = "Interrupted: nothing was changed."
            _event_result("interrupted", 130, message)
            typer.echo(_painted(message, "summary", err=True), err=True)
            sys.exit(130)
        except SegopsError as exc:  # raised outside a command's `_errors()`
            guard = isinstance(exc, GuardError)
            _event_result("refused" if guard else "error", EXIT_GUARD if guard else 1, str(exc))
            message = f"{'Refused' if guard else 'Error'}: {_for_user(str(exc))}"
            typer.echo(_painted(message, "error", err=True), err=True)
            sys.exit(EXIT_GUARD if guard else EXIT_ERROR)
        except Exception as exc:  # the last resort: a bug, or a library failing unforeseen
            terminated = termination()
            if terminated is not None:  # a library that turned a SIGTERM into its own error
                sys.exit(terminated)
            if interrupted():  # a library that turned Ctrl-C into its own error
                typer.echo("Interrupted: nothing was changed.", err=True)
                sys.exit(130)
            line = report_crash(exc, argv)
            _event_result("error", EXIT_ERROR, line)
            typer.echo(line, err=True)
            sys.exit(EXIT_ERROR)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def invoke(self, ctx: Any) -> Any:
        # typer turns KeyboardInterrupt into a silent exit 130: keep it, to say what it did
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    def hoisted(self, argv: list[str]) -> list[str]:
        """Return `argv` with the global options given after the command moved before it.

        `segops plan --no-color -v` then means `segops --no-color -v plan`, as in uv or
        dbt. A token is moved only when the command has no option of that name and it is
        not the value of one of the command's options; nothing after `--` moves.
        """
        start = _command_index(argv, self.commands)
        if start is None:
            return argv
        command: Any = self.commands[argv[start]]
        end = start + 1
        while hasattr(command, "commands") and end < len(argv) and argv[end] in command.commands:
            command, end = command.commands[argv[end]], end + 1
        own = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        valued = {
            o
            for p in command.params
            if not getattr(p, "is_flag", True) and not getattr(p, "count", False)
            for o in p.opts
        }
        moved: list[str] = []
        kept: list[str] = []
        rest = iter(argv[end:])
        for token in rest:
            name = token.split("=", 1)[0]
            if token == "--":
                kept += [token, *rest]
            elif token in valued:
                kept += [token, *islice(rest, 1)]
            elif name not in own and _is_global(name):
                moved.append(token)
                if name in _GLOBAL_VALUED and "=" not in token:
                    moved += islice(rest, 1)
            else:
                kept.append(token)
        return [*argv[:start], *moved, *argv[start:end], *kept]


# Options of the callback that commands accept after their name too (see `hoisted`).
_GLOBAL_FLAGS = frozenset({"--verbose", "--no-color", "--no-progress"})
_GLOBAL_VALUED = frozenset({"--chdir", "-C", "--env"})


def _is_global(name: str) -> bool:
    return name in _GLOBAL_FLAGS or name in _GLOBAL_VALUED or re.fullmatch(r"-v+", name) is not None


def _command_index(argv: list[str], commands: Mapping[str, Any]) -> int | None:
    """Return the index of the command's name in `argv`, skipping the global options."""
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in commands:
            return index
        if token == "--" or not token.startswith("-"):
            return None
        index += 2 if token in _GLOBAL_VALUED else 1
    return None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help: rich's help panels cost ~70 ms of start-up for every `--help`.
    rich_markup_mode=None,
)


class Format(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"  # a pull-request comment


class DataChanged(StrEnum):
    apply = "apply"  # diff the moved segments again and apply behind the guards
    refuse = "refuse"  # refuse the plan as stale, as for a definition change


_state: dict[str, Path] = {"chdir": Path(".")}
_environment: dict[str, str | None] = {"name": None}  # --env / SEGOPS_ENV
_session: dict[str, Session] = {}
_events: dict[str, EventStream | None] = {"current": None}  # apply --json


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"segops {segops_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    chdir: Annotated[
        Path, typer.Option("--chdir", "-C", help="Workspace folder (holds segops.yaml).")
    ] = Path("."),
    environment: Annotated[
        str | None,
        typer.Option(
            "--env",
            envvar="SEGOPS_ENV",
            metavar="NAME",
            help="The environment of segops.yaml to work on (its `environments`).",
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log to stderr: -v what segops does (info), -vv every HTTP call and query "
            "(debug). Also SEGOPS_LOG=debug|info|warn; SEGOPS_LOG_FILE=PATH adds JSON lines.",
        ),
    ] = 0,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colour in the output (also NO_COLOR=1).")
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bars or progress lines.")
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Terraform for audience segments: plan and apply segment membership from manifests.

    Global options go before or after the command: `segops plan -v` and `segops -v plan`
    are the same.
    """
    from segops.ui.session import Session

    _state["chdir"] = chdir
    _environment["name"] = environment or None
    _events["current"] = None
    session = Session.start(verbose, no_color, no_progress, os.environ)
    _session["current"] = session
    ctx.call_on_close(session.close)


@app.command()
def version() -> None:
    """Print the segops version."""
    typer.echo(f"segops {segops_version()}")


@app.command()
def validate() -> None:
    """Check segops.yaml, every manifest and every source's columns.

    With environments in segops.yaml and no --env, every environment is checked.
    """
    from segops.config.workspace import environment_names
    from segops.operations import validate_workspace

    chosen = _environment["name"]
    with _errors():
        names: list[str | None] = [chosen] if chosen else [*environment_names(_state["chdir"])]
    for name in names or [None]:
        _environment["name"] = name
        with _context() as ctx:
            count = validate_workspace(ctx)
        segments = len(ctx.workspace.segments)
        where = f" in environment {name}" if name else ""
        typer.echo(
            f"Success! {plural(segments, 'segment')} and {plural(count, 'destination')} are "
            f"valid{where}."
        )


@app.command()
def plan(
    out: Annotated[
        Path | None,
        typer.Option(
            "-out",
            "--out",
            "-o",
            metavar="FILE",
            help="Save the plan to this file for `segops apply FILE`.",
        ),
    ] = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    segment: SegmentOption = None,
    exclude: ExcludeOption = None,
    target: TargetOption = None,
    changed_since: ChangedSinceOption = None,
    destroy: DestroyOption = False,
    replace: ReplaceOption = None,
    artifact: ArtifactOption = None,
    show_identifiers: ShowIdentifiersOption = False,
    allow_new_state: AllowNewStateOption = False,
) -> None:
    """Show what apply would change: members to add, update and remove per destination.

    Exit codes: 0 no changes (or changes without --detailed-exitcode), 1 error,
    2 changes (with --detailed-exitcode), 3 a safety guard stops the plan.
    """
    from segops.operations import check_allow_new_state, engine_for, make_plan
    from segops.planning.planfile import plan_key, save_plan

    with _context(allow_new_state) as ctx, engine_for(ctx) as engine:
        _check_markdown_options(fmt, artifact, show_identifiers)
        _warn_unignored(ctx, out)
        check_allow_new_state(ctx)
        key = plan_key(os.environ) if out is not None else None
        chosen = _selection(ctx, segment, exclude, changed_since, target)
        result = make_plan(ctx, engine, segops_version(), chosen, destroy, replace or ())
        if out is not None:
            save_plan(result, ctx.work / "deltas", out, key)
        samples = _samples(engine, result, ctx.work / "deltas") if show_identifiers else None
    typer.echo(_render(result, fmt, artifact, samples), nl=False)
    if out is not None and fmt is Format.text:
        typer.echo(
            _for_user(
                f"\nSaved the plan to: {out}\n"
                f"To apply exactly this plan, run: segops apply {shlex.quote(str(out))}"
            )
        )
    if result.tripped:
        raise typer.Exit(EXIT_GUARD)
    if detailed_exitcode and result.has_changes:
        raise typer.Exit(EXIT_CHANGES)


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="A plan file written by `segops plan -out`.")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    artifact: ArtifactOption = None,
    show_identifiers: ShowIdentifiersOption = False,
) -> None:
    """Show a saved plan."""
    from segops.planning.planfile import plan_key, read_plan

    with _errors():
        _check_markdown_options(fmt, artifact, show_identifiers)
        key = plan_key(os.environ)
        saved = read_plan(file, key).plan
        samples = _saved_samples(file, saved, key) if show_identifiers else None
    typer.echo(_render(saved, fmt, artifact, samples), nl=False)


@app.command()
def apply(
    file: Annotated[
        Path | None, typer.Argument(help="A saved plan; without it, segops plans first and asks.")
    ] = None,
    auto_approve: Annotated[
        bool,
        typer.Option(
            "--auto-approve", help="Apply without asking (needed when not on a terminal)."
        ),
    ] = False,
    allow_removals: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-removals",
            help="Let this saved plan through the safety guards for SEGMENT (or "
            "SEGMENT@PLAN_DIGEST); repeatable. Needs FILE.",
        ),
    ] = None,
    segment: SegmentOption = None,
    exclude: ExcludeOption = None,
    target: TargetOption = None,
    changed_since: ChangedSinceOption = None,
    destroy: DestroyOption = False,
    replace: ReplaceOption = None,
    allow_new_state: AllowNewStateOption = False,
    data_changed: Annotated[
        DataChanged | None,
        typer.Option(
            "--data-changed",
            help="When a segment's source data moved since FILE was made: diff it again and "
            "apply behind the safety guards (apply, the default), or refuse the plan (refuse).",
        ),
    ] = None,
    json_events: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON event per line instead of text (schema: "
            "schemas/apply-events.schema.json); needs FILE or --auto-approve.",
        ),
    ] = False,
) -> None:
    """Send the planned changes and record the new state.

    Exit codes: 0 applied (or nothing to do), 1 error, 3 a safety guard stops the plan,
    130 interrupted (Ctrl-C): `segops apply` again resumes.
    """
    from segops.operations import (
        check_allow_new_state,
        claim_state,
        credentials_for,
        engine_for,
        make_plan,
        read_saved_plan,
        release_lock,
        run_apply,
        take_lock,
        verify_saved_plan,
    )
    from segops.planning.guards import check_overrides
    from segops.render.human import render_text
    from segops.ui import interrupt
    from segops.ui.events import EventStream

    version = segops_version()
    events = _events["current"] = EventStream() if json_events else None
    if allow_removals and file is None:  # refused before planning: it can never apply
        _usage(
            "--allow-removals needs a saved plan: run `segops plan -out FILE`, review it, "
            "then `segops apply FILE --allow-removals SEGMENT`"
        )
    if events is not None and file is None and not auto_approve:
        _usage("--json cannot ask for confirmation: add --auto-approve, or apply a saved plan")
    interrupts = interrupt.current()
    results: list[ApplyResult] = []
    total = 0  # destinations the apply sends to; 0 until sending starts

    def on_result(result: ApplyResult) -> None:
        results.append(result)
        if events is not None:
            events.destination(result)
        else:
            _print_result(result)

    try:
        with _context(allow_new_state) as ctx, engine_for(ctx) as engine:
            _warn_unignored(ctx, file)
            check_allow_new_state(ctx)
            saved = None
            if file is not None:
                if segment or exclude or changed_since or target or destroy or replace:
                    raise UsageError(
                        "a saved plan is applied as it was made: give --segment, --exclude, "
                        "--target, --changed-since, --destroy and --replace to `segops plan`"
                    )
                saved = read_saved_plan(file, os.environ)  # before the lock: it changes nothing
            elif data_changed is not None:
                raise UsageError("--data-changed goes with a saved plan: segops apply FILE")
            lock, created = take_lock(ctx.store, "apply")
            try:
                claim_state(ctx, version)
                if saved is not None:
                    refuse = data_changed is DataChanged.refuse
                    verified = verify_saved_plan(
                        ctx, engine, saved.plan, version, str(file), refuse
                    )
                    for line in verified.refreshes:
                        if events is not None:
                            events.data_changed(line)
                        else:
                            typer.echo(line)
                    chosen = verified.plan
                    if events is not None:
                        events.plan(chosen)
                    reviewed = saved.plan if verified.moved else None
                    check_overrides(chosen, allow_removals or (), saved.sha256, reviewed)
                else:
                    selection = _selection(ctx, segment, exclude, changed_since, target)
                    chosen = make_plan(ctx, engine, version, selection, destroy, replace or ())
                    if events is not None:
                        events.plan(chosen)
                    else:
                        text = _for_user(render_text(chosen))
                        typer.echo(_painted(text, "plan_text"), nl=False)
                    check_overrides(chosen, allow_removals or (), None)
                if saved is None and not chosen.has_changes:
                    if events is not None:
                        events.result("nothing_to_do", EXIT_OK, render_text(chosen).strip())
                    return
                # Before the question: a missing secret is said before anyone answers "yes".
                credentials = credentials_for(ctx, chosen)
                _hide(credentials)
                if saved is None:
                    _confirm(auto_approve)
                total = sum(c.is_change for c in chosen.changes)
                with interrupts.sending() if interrupts else nullcontext():
                    report = run_apply(
                        ctx,
                        engine,
                        chosen,
                        version,
                        on_result,
                        None,
                        credentials,
                        events.operation if events else None,
                        interrupts.requested if interrupts else lambda: False,
                        interrupts.sleep if interrupts else time.sleep,
                    )
            finally:
                release_lock(ctx.store, lock, created)
    except KeyboardInterrupt:
        if not total:
            raise  # before sending: nothing changed (said by _Group.main)
        _interrupted(results, total, hard=True)
    except Exception:  # a library that turned the second Ctrl-C into its own error
        if not total or interrupts is None or not interrupts.hard_requested():
            raise
        _interrupted(results, total, hard=True)
    if interrupts is not None and interrupts.requested():
        _interrupted(results, total, hard=False)
    _print_summary(report.results)
    if not report.ok:
        raise typer.Exit(EXIT_ERROR)


def _interrupted(results: Sequence[ApplyResult], total: int, hard: bool) -> NoReturn:
    """Say in one line what an interrupted apply did, then exit 130."""
    from segops.ui.interrupt import EXIT_INTERRUPTED

    done = sum(r.ok and not r.pending for r in results)
    cut = len(results) - done
    parts = [f"{plural(done, 'destination')} applied"]
    if hard:
        parts.append("the one under way was stopped at once")
    elif cut:
        parts.append(f"{cut} stopped part-way")
    if total - len(results) - hard > 0:
        parts.append(f"{total - len(results) - hard} not started")
    recorded = (
        "the journal records what was sent"
        if hard
        else "the state records what the platforms confirmed"
    )
    message = _for_user(
        f"Interrupted: {', '.join(parts)}; {recorded}. Run `segops apply` to resume."
    )
    events = _events.get("current")
    if events is not None:
        events.interrupt(hard, message)
        events.result("interrupted", EXIT_INTERRUPTED, message, results, total - len(results))
    typer.echo(_painted(message, "summary", err=True), err=True)
    raise typer.Exit(EXIT_INTERRUPTED)


@app.command()
def init() -> None:
    """Start a workspace in the current folder (or -C DIR): segops.yaml, an example
    manifest, and a .gitignore for the state, outputs and plan files. Overwrites nothing."""
    from segops.config.scaffold import init_workspace

    root = _state["chdir"]
    with _errors():
        written = init_workspace(root)
    lines = [f"Wrote {', '.join(written.created)}."]
    if written.gitignore_added:
        lines.append(f"Added {' '.join(written.gitignore_added)} to .gitignore.")
    lines.append(
        "Next: `segops validate`, then `segops plan` and `segops apply` (the example writes "
        "to out/, no credentials needed)."
    )
    typer.echo(_for_user("\n".join(lines)))


@app.command("force-unlock")
def force_unlock(
    lock_id: Annotated[str, typer.Argument(help="The Lock ID printed by the run that holds it.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Release it even though its process still runs on this machine."
        ),
    ] = False,
) -> None:
    """Release a stale state lock left by a run that is gone."""
    with _context() as ctx:
        ctx.store.force_unlock(lock_id, force)
    typer.echo(f"segops state has been unlocked (lock {lock_id}).")


state_app = typer.Typer(help="Inspect and repair the state.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("recover")
def state_recover(
    force: Annotated[
        bool,
        typer.Option("--force", help="Go back to the backup even though state.json reads fine."),
    ] = False,
) -> None:
    """Restore state.json from state.json.backup, the state before the last write.

    A damaged state.json is kept beside it (state.json.damaged-<time>).
    """
    with _context() as ctx:
        lock = ctx.store.lock("state recover")
        try:
            recovered = ctx.store.recover(force)
        finally:
            ctx.store.unlock(lock.id)
    typer.echo(
        _for_user(
            f"Recovered the state from state.json.backup: lineage {recovered.lineage}, "
            f"{plural(len(recovered.destinations), 'destination')}, "
            f"now serial {recovered.serial}.\n"
            "It is the state before the last write: the destination that write recorded may have "
            "members on its platform that the state does not list. Run `segops plan` and review "
            "it before you apply."
        )
    )


@state_app.command("list")
def state_list() -> None:
    """List the destination addresses the state holds, one a line."""
    from segops.render.state import render_list

    with _context() as ctx:
        state = ctx.store.read()
    typer.echo(render_list(state), nl=False)


@state_app.command("show")
def state_show(
    address: Annotated[str, typer.Argument(help="A destination address, SEGMENT.NAME.")],
) -> None:
    """Show what the state records for one destination: settings, counts, digests, last write.

    Never a member identifier.
    """
    from segops.render.state import render_entry
    from segops.state import edits

    with _context() as ctx:
        state = ctx.store.read()
        entry = edits.entry_of(state, address)
    assert state is not None
    typer.echo(render_entry(entry, state), nl=False)


@state_app.command("rm")
def state_rm(
    addresses: Annotated[
        list[str], typer.Argument(help="Destination addresses to forget, SEGMENT.NAME.")
    ],
) -> None:
    """Forget destinations: the state drops them, their platforms keep their members.

    While a forgotten destination is still in the manifests, the next plan creates it:
    adopt what its platform segment holds with `segops import` first.
    """
    from segops import lifecycle

    with _context() as ctx:
        forgotten = lifecycle.state_rm(ctx, addresses)
        wanted = {d.address for d in ctx.workspace.destinations}
    for entry in forgotten:
        typer.echo(
            f"Removed {entry.address} from the state; its {_plural(entry.member_count, 'member')}"
            " stay on the platform."
        )
        if entry.address in wanted:
            typer.echo(
                f"  {entry.address} is still in the manifests: the next plan creates it. To "
                f"adopt what the platform holds: segops import {entry.address} --members FILE"
            )


@state_app.command("mv")
def state_mv(
    source: Annotated[str, typer.Argument(metavar="FROM", help="The address in the state.")],
    target: Annotated[str, typer.Argument(metavar="TO", help="Its new address, SEGMENT.NAME.")],
) -> None:
    """Move a destination's state entry to another address; nothing is sent.

    A rename that keeps the platform segment needs no `state mv`: the plan finds it.
    """
    from segops import lifecycle

    with _context() as ctx:
        moved = lifecycle.state_mv(ctx, source, target)
    typer.echo(f"Moved {source} to {target} ({_plural(moved.entry.member_count, 'member')}).")
    if not moved.in_manifests:
        typer.echo(
            f"  {target} is not a destination in the manifests: the next plan destroys it.",
            err=True,
        )


class Backend(StrEnum):
    local = "local"
    s3 = "s3"


@state_app.command("migrate")
def state_migrate(
    to: Annotated[Backend, typer.Option("--to", help="Where the state goes.")],
    path: Annotated[
        str | None, typer.Option("--path", help="local: folder in the workspace (.segops).")
    ] = None,
    bucket: Annotated[str | None, typer.Option("--bucket", help="s3: bucket name.")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="s3: key prefix (segops).")] = None,
    region: Annotated[str | None, typer.Option("--region", help="s3: bucket region.")] = None,
    endpoint_url: Annotated[
        str | None, typer.Option("--endpoint-url", help="s3: an S3-compatible endpoint.")
    ] = None,
) -> None:
    """Move the state (snapshots, journal, ledgers) to another store, lineage and serial kept.

    The target must be empty. The old store is kept, marked as moved: segops refuses to use
    it and says where the state went. Change segops.yaml's `state:` as printed.
    """
    from segops.operations import migrate_state
    from segops.state.migrate import Target

    target = Target(to.value, path, bucket, prefix, region, endpoint_url)
    with _context() as ctx:
        state, count, store = migrate_state(ctx, target)
        source = ctx.store.describe()
    moved = (
        f"Moved the state to {store.describe()}: lineage {state.lineage}, serial "
        f"{state.serial}, {plural(len(state.destinations), 'destination')}, "
        f"{plural(count, 'file')}.\n"
        f"{source} is kept, marked as moved: segops now refuses to use it.\n"
        "Point segops.yaml at the new store (segops does not edit it: review the change "
        f"like any other):\n\n{target.config()}"
    )
    typer.echo(_for_user(moved))


@app.command("import")
def import_command(
    address: Annotated[str, typer.Argument(help="The destination to adopt, SEGMENT.NAME.")],
    members: Annotated[
        Path | None,
        typer.Option(
            "--members",
            help="A .csv, .ndjson or .parquet file of the members the platform segment "
            "holds, in the destination's identifier column.",
        ),
    ] = None,
    assume_empty: Annotated[
        bool, typer.Option("--assume-empty", help="The platform segment holds no member.")
    ] = False,
) -> None:
    """Adopt a platform segment that already exists: record its members as applied.

    Nothing is sent: the next plan sends only the difference with the manifests.
    """
    from segops import lifecycle
    from segops.operations import engine_for

    if (members is None) == (not assume_empty):
        with _errors():
            raise UsageError("give exactly one of --members FILE and --assume-empty")
    with _context() as ctx, engine_for(ctx) as engine:
        entry = lifecycle.import_destination(ctx, engine, address, members, segops_version())
    typer.echo(
        f"Imported {entry.address}: {_plural(entry.member_count, 'member')} recorded as "
        "applied; nothing was sent.\nRun `segops plan` to see what the next apply sends."
    )


@app.command("explain")
def explain_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A file holding the one identifier to explain; `-` (the default): "
            "standard input. Never an argument: identifiers are personal data, and a "
            "command line lands in shell histories and process lists."
        ),
    ] = Path("-"),
) -> None:
    """Say, for every destination, whether one member is desired and whether it was applied.

    Where it is desired: the manifest, the source and its lines. Whether the state says it
    was applied, and what wrote that entry last. No identifier is printed, not even this one.
    """
    from segops import lifecycle
    from segops.operations import engine_for
    from segops.render.state import render_findings

    with _errors():
        value = _one_identifier(file)
    with _context() as ctx, engine_for(ctx) as engine:
        findings = lifecycle.explain(ctx, engine, value)
    typer.echo(render_findings(findings), nl=False)


@app.command("fmt")
def fmt_command(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Files to format; default: segops.yaml and every manifest."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing; exit 1 when a file is not formatted."),
    ] = False,
) -> None:
    """Rewrite segops.yaml and the manifests in canonical form, keeping their comments.

    Prints the files it changed (with --check: would change), relative to the workspace.
    """
    # Imported here: ruamel.yaml is only needed by fmt, and every other command would pay
    # for its import at start-up.
    from segops.config.fmt import find_reformats, named_files, workspace_files, write_reformats

    root = _state["chdir"]
    with _errors():
        targets = named_files(root, files) if files else workspace_files(root)
        reformats = find_reformats(targets)
        if not check:
            write_reformats(reformats)
    for reformat in reformats:
        typer.echo(reformat.name)
    if check and reformats:
        message = f"{plural(len(reformats), 'file')} to reformat: run `segops fmt`."
        typer.echo(_for_user(message), err=True)
        raise typer.Exit(EXIT_ERROR)


# -- helpers ---------------------------------------------------------------------------


@contextmanager
def _context(allow_new_state: bool = False) -> Iterator[Context]:
    """Load the workspace and give a scratch folder that is removed afterwards."""
    from segops.config.workspace import load_workspace
    from segops.operations import Context, store_for

    with _errors(), _scratch() as work:
        workspace = load_workspace(_state["chdir"], _environment["name"])
        yield Context(workspace, store_for(workspace, work), work, allow_new_state)


@contextmanager
def _scratch() -> Iterator[Path]:
    """Give a private (0700) scratch folder, removed on exit, on SIGTERM and at next start.

    Scratch folders hold delta files, that is member identifiers. A run killed outright
    leaves its folder behind: each run first removes those of dead processes.
    """
    folder = Path(tempfile.gettempdir())
    remove_stale_scratch(folder)
    # The folder is made inside the `try`, its removal is never cut (see `cleanup`): a
    # SIGTERM or SIGHUP reaches any thread, so Python's handler may raise at any bytecode,
    # right after a mkdtemp or while a folder is being removed.
    tmp = scratch_name(folder)
    try:
        tmp.mkdir(mode=PRIVATE_DIR)
        yield tmp
    finally:
        cleanup(lambda: shutil.rmtree(tmp, ignore_errors=True))


@contextmanager
def _errors() -> Iterator[None]:
    """Print a SegopsError as one clear message and exit 1."""
    try:
        yield
    except GuardError as exc:
        typer.echo(_painted(f"Refused: {_for_user(str(exc))}", "error", err=True), err=True)
        _event_result("refused", EXIT_GUARD, str(exc))
        raise typer.Exit(EXIT_GUARD) from None
    except SegopsError as exc:
        label = "Usage error" if isinstance(exc, UsageError) else "Error"
        typer.echo(_painted(f"{label}: {_for_user(str(exc))}", "error", err=True), err=True)
        _event_result("error", EXIT_ERROR, str(exc))
        raise typer.Exit(EXIT_ERROR) from None


def _one_identifier(file: Path) -> str:
    """Return the one identifier `file` (or standard input, for `-`) holds; refuse anything else.

    The text is never echoed: an error says what is wrong with it, not what it is.
    """
    where = "standard input" if str(file) == "-" else str(file)
    if str(file) != "-" and not file.is_file():
        # Not echoed: it may be an identifier typed where the file name goes.
        raise UsageError(
            "explain reads the identifier from a file or from standard input, never from the "
            "command line, and no file has the name given: `segops explain < id.txt`"
        )
    try:
        raw = sys.stdin.buffer.read(1 << 16) if str(file) == "-" else file.read_bytes()[: 1 << 16]
    except OSError as exc:
        raise UsageError(f"{where}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not UTF-8 text") from None
    lines = text.removesuffix("\n").removesuffix("\r").split("\n")
    if len(lines) != 1 or not lines[0].strip():
        count = 0 if not text.strip() else len(lines)
        raise UsageError(
            f"{where}: holds {count} lines; give exactly one identifier, on one line "
            "(e.g. `segops explain id.txt`, or `segops explain < id.txt`)"
        )
    if lines[0] != lines[0].strip():
        raise UsageError(f"{where}: the identifier starts or ends with spaces: remove them")
    return lines[0]


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _relative(message: str) -> str:
    """Return `message` with paths inside the workspace written relative to it."""
    root = str(_state["chdir"].resolve())
    return message.replace(f"{root}{os.sep}", "") if root != os.sep else message


# `segops plan`, "run: segops apply FILE": a command to type (not "a segops plan file")
_COMMAND_HINT = re.compile(
    r"(^|`|: )segops (?=(?:validate|plan|show|apply|state|force-unlock|fmt|init)\b)",
    re.MULTILINE,
)


def _for_user(message: str) -> str:
    """Return `message` for the terminal: paths relative to the workspace, and every
    `segops COMMAND` hint with the `-C DIR` the user gave, so that it runs as printed."""
    message = _relative(message)
    chdir = str(_state["chdir"])
    if chdir in ("", "."):
        return message
    return _COMMAND_HINT.sub(lambda m: f"{m[1]}segops -C {shlex.quote(chdir)} ", message)


def _event_result(status: str, code: int, message: str) -> None:
    """End the JSON events of `apply --json` (when on) with a result saying why."""
    events = _events.get("current")
    if events is not None:
        events.result(status, code, _for_user(message))


def _usage(message: str) -> NoReturn:
    """Print a usage error and exit 1."""
    typer.echo(_painted(f"Usage error: {_for_user(message)}", "error", err=True), err=True)
    _event_result("error", EXIT_ERROR, message)
    raise typer.Exit(EXIT_ERROR)


def _painted(text: str, paint: str, err: bool = False) -> str:
    """Return `text` coloured by `segops.ui.colour.<paint>` when the terminal wants colour."""
    session = _session.get("current")
    wanted = session is not None and (session.err_colour if err else session.colour)
    if not wanted:
        return text
    from segops.ui import colour

    style: Callable[[str], str] = getattr(colour, paint)
    return style(text)


def _hide(credentials: Mapping[str, Mapping[str, str]]) -> None:
    """Blank these secrets out of every log record from now on."""
    session = _session.get("current")
    if session is not None and session.logs is not None:
        session.logs.hide(v for values in credentials.values() for v in values.values())


def _warn_unignored(ctx: Context, plan_file: Path | None) -> None:
    """Warn when, in a git repository, a path holding member identifiers is not ignored."""
    from segops.config.gitignore import member_paths, unignored

    files = [plan_file] if plan_file is not None else []
    found = unignored(ctx.root, member_paths(ctx.workspace), files)
    if found:
        message = (
            f"Warning: git does not ignore {', '.join(found)}: "
            f"{'it holds' if len(found) == 1 else 'they hold'} member identifiers (personal "
            "data); add them to .gitignore"
        )
        typer.echo(_painted(message, "warning", err=True), err=True)


def _selection(
    ctx: Context,
    segment: list[str] | None,
    exclude: list[str] | None,
    changed_since: str | None,
    target: list[str] | None = None,
) -> Selection:
    from segops.operations import planning_state
    from segops.planning.selection import make_selection

    state = planning_state(ctx)
    entries = state.destinations if state else ()
    return make_selection(
        ctx.workspace,
        segment or (),
        exclude or (),
        changed_since,
        [d.segment for d in entries],
        target or (),
        [d.address for d in entries],
    )


def _render(
    result: Plan,
    fmt: Format,
    artifact: str | None = None,
    samples: Mapping[str, Sequence[str]] | None = None,
) -> str:
    from segops.render.human import render_text
    from segops.render.json import render_json
    from segops.render.markdown import render_markdown

    if fmt is Format.markdown:
        shown = samples is not None
        return render_markdown(result, artifact=artifact, show_identifiers=shown, samples=samples)
    if fmt is Format.json:
        return render_json(result)
    return _painted(_for_user(render_text(result)), "plan_text")


def _check_markdown_options(fmt: Format, artifact: str | None, show_identifiers: bool) -> None:
    if (artifact is not None or show_identifiers) and fmt is not Format.markdown:
        raise UsageError("--artifact and --show-identifiers go with --format markdown")


def _samples(engine: MemberEngine, plan: Plan, deltas: Path) -> dict[str, list[str]]:
    """Return the first SAMPLE_SIZE keys of each change's delta file in `deltas`."""
    from segops.render.markdown import SAMPLE_SIZE

    found: dict[str, list[str]] = {}
    for change in plan.changes:
        if change.delta is None:
            continue
        rows = engine.read_delta(deltas / change.delta.name, change.encoding)
        try:
            found[change.address] = [row.key for row in islice(rows, SAMPLE_SIZE)]
        finally:
            if isinstance(rows, Generator):
                rows.close()  # closes the DuckDB cursor without reading the rest
    return found


def _saved_samples(file: Path, saved: Plan, key: bytes | None) -> dict[str, list[str]]:
    """Return samples from the deltas of a plan file, extracted (and verified) in a scratch dir."""
    from segops.engine.duck import DuckDBEngine
    from segops.model import EngineConfig
    from segops.planning.planfile import open_plan

    with _scratch() as work:
        open_plan(file, work / "deltas", key)
        engine = DuckDBEngine(work, work, EngineConfig())  # the plan file's deltas, read here
        try:
            return _samples(engine, saved, work / "deltas")
        finally:
            engine.close()


def _confirm(auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            "not on a terminal: re-run with --auto-approve, or save a plan with "
            "`segops plan -out FILE` and run `segops apply FILE`"
        )
    answer = typer.prompt(
        "\nDo you want to perform these actions? Only 'yes' will be accepted",
        default="",
        show_default=False,
    )
    if answer.strip() != "yes":
        typer.echo("Apply cancelled.")
        raise typer.Exit(EXIT_ERROR)


def _print_result(result: ApplyResult) -> None:
    sent = result.sent
    counts = f"+{sent.add:,} ~{sent.update:,} -{sent.remove:,} sent"
    if result.files:
        counts += f"; {plural(len(result.files), 'file')} written"
    if result.ok and not result.pending:
        typer.echo(_painted(f"{result.address}: done ({counts})", "result_line"))
    elif result.pending:
        message = _for_user(
            f"{result.address}: {plural(result.pending, 'operation')} pending on the "
            f"platform quota ({counts}); run `segops apply` again {result.eta or 'later'} "
            "to continue"
        )
        typer.echo(_painted(message, "result_line"))
    else:
        message = f"{result.address}: FAILED ({counts}): {result.message}"
        typer.echo(_painted(_for_user(message), "result_line", err=True), err=True)


def _print_summary(results: tuple[ApplyResult, ...]) -> None:
    failed = sum(not r.ok for r in results)
    done = len(results) - failed
    events = _events.get("current")
    if events is not None:
        message = f"{plural(done, 'destination')} applied, {failed} failed"
        events.result("failed" if failed else "applied", int(bool(failed)), message, results)
        return
    if failed:
        message = (
            f"\nApply finished with errors: {plural(done, 'destination')} applied, "
            f"{failed} failed; run `segops plan` to see what is left."
        )
        typer.echo(_painted(_for_user(message), "summary", err=True), err=True)
    else:
        message = f"\nApply complete! {plural(done, 'destination')} applied."
        typer.echo(_painted(message, "summary"))


def main() -> None:
    from segops.ui import interrupt, typerfast

    typerfast.install()
    interrupts = interrupt.install()
    threading.excepthook = _thread_crash
    try:
        app(prog_name="segops")
    except SystemExit as done:
        if interrupts.hard_requested():  # stopped at once: no wait for threads still polling
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(done.code if isinstance(done.code, int) else 130)
        raise


def _thread_crash(args: threading.ExceptHookArgs) -> None:
    """Report an exception that ends a thread like one that ends the command."""
    if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
        typer.echo(report_crash(args.exc_value, sys.argv[1:]), err=True)
