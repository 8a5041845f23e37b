"""The steps behind each command, wired together: load, plan, apply.

Each function takes what it needs and returns values; printing and exit codes belong
to the CLI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from segops.apply.journal import FileJournal, JournalResources
from segops.apply.loop import ApplyReport, apply_plan
from segops.config.credentials import resolve as resolve_credentials
from segops.destinations import ApplyResult
from segops.destinations.factory import DestinationFactory
from segops.destinations.platform import Estimator
from segops.destinations.registry import platform_spec
from segops.engine.duck import MemberEngine
from segops.errors import Problem, SourceError, StalePlanError
from segops.model import DestinationChange, DiffResult, MemberRow, Plan, Workspace
from segops.planning import planner
from segops.planning.guards import with_guards
from segops.planning.inputs import InputDigests, all_inputs
from segops.planning.planfile import open_plan
from segops.planning.schedule import with_schedule
from segops.planning.selection import Selection
from segops.state.local import LocalStateStore
from segops.state.model import State


@dataclass(frozen=True, slots=True)
class Context:
    """A loaded workspace with its state store and a scratch folder for one command."""

    workspace: Workspace
    store: LocalStateStore
    work: Path

    @property
    def root(self) -> Path:
        return Path(self.workspace.root)


def store_for(workspace: Workspace) -> LocalStateStore:
    return LocalStateStore(Path(workspace.root) / workspace.state_path)


@contextmanager
def engine_for(ctx: Context) -> Iterator[MemberEngine]:
    engine = MemberEngine(ctx.root, ctx.work, ctx.workspace.engine)
    try:
        yield engine
    finally:
        engine.close()


def validate_workspace(ctx: Context) -> int:
    """Check that every source can be opened and has the columns its destinations read.

    Returns the number of destinations checked; raises SourceError with every problem.
    """
    problems: list[Problem] = []
    with engine_for(ctx) as engine:
        for destination in ctx.workspace.destinations:
            try:
                engine.check_columns(destination)
            except SourceError as exc:
                problems.extend(exc.problems)
    if problems:
        raise SourceError(problems)
    return len(ctx.workspace.destinations)


def make_plan(
    ctx: Context, engine: MemberEngine, version: str, selection: Selection | None = None
) -> Plan:
    """Read state and sources, diff members, and return the plan; deltas go to work/deltas.

    With a selection, segments it leaves out are neither planned nor destroyed.
    """
    selection = selection or Selection()
    state = ctx.store.read()
    ws = ctx.workspace
    digests = InputDigests(ws)  # runs beside the diff, which reads the same files
    desired = [d for d in ws.destinations if selection.includes(d.segment)]
    considered = state
    if state is not None:
        kept = tuple(d for d in state.destinations if selection.includes(d.segment))
        considered = replace(state, destinations=kept)
    decisions = planner.decide(desired, considered, {c.name for c in ws.connections})
    results: dict[str, DiffResult] = {}
    for decision in decisions:
        request = decision.request
        snapshot = ctx.store.snapshot_path(request.applied.sha256) if request.applied else None
        results[decision.address] = engine.diff(request, snapshot, ctx.work / "deltas")
    plan = planner.build_plan(decisions, results, state, digests.result(), version)
    plan = replace(plan, selection=selection.text)
    plan = with_schedule(plan, estimators(ws, ctx.store.path, time.time()), _rows_of(ctx, engine))
    return with_guards(plan, {s.name: s.safety for s in ws.segments}, ws.safety)


def _rows_of(
    ctx: Context, engine: MemberEngine
) -> Callable[[DestinationChange], Iterator[MemberRow]]:
    """Return a reader of a planned change's delta rows (counts that depend on line sizes)."""

    def rows(change: DestinationChange) -> Iterator[MemberRow]:
        assert change.delta is not None, "a change that sends members has a delta file"
        return engine.read_delta(ctx.work / "deltas" / change.delta.name, change.encoding)

    return rows


def estimators(workspace: Workspace, state_dir: Path, now: float) -> dict[str, Estimator]:
    """Return the operation estimator of every connection whose platform is installed."""
    found = {}
    for connection in workspace.connections:
        spec = platform_spec(connection.target)
        if spec is not None:
            found[connection.name] = spec.estimator(connection, state_dir, now)
    return found


def check_not_stale(ctx: Context, plan: Plan, state: State | None) -> None:
    reasons = planner.stale_reasons(plan, state, all_inputs(ctx.workspace))
    if reasons:
        listed = "\n".join(f"  - {r}" for r in reasons)
        raise StalePlanError(
            "the saved plan is stale: it no longer matches the state or the workspace\n"
            f"{listed}\nRun `segops plan` again and apply the new plan."
        )


def load_saved_plan(ctx: Context, path: Path) -> Plan:
    return open_plan(path, ctx.work / "deltas")


def run_apply(
    ctx: Context,
    engine: MemberEngine,
    plan: Plan,
    version: str,
    on_result: Callable[[ApplyResult], None],
    env: Mapping[str, str] | None = None,
) -> ApplyReport:
    """Apply `plan` (the caller holds the lock and has checked staleness).

    Every secret the plan needs is read from the environment first: a missing one stops the
    apply before anything is sent.
    """
    used = {c.connection for c in plan.changes if c.members.changed}
    connections = [c for c in ctx.workspace.connections if c.name in used]
    credentials = resolve_credentials(connections, os.environ if env is None else env)
    journal = FileJournal(ctx.store.path / "journal.jsonl")
    factory = DestinationFactory(
        ctx.root,
        ctx.store.path,
        ctx.workspace,
        credentials,
        JournalResources(journal),
        f"run-{plan.serial + 1:06d}",
    )
    try:
        return apply_plan(
            plan,
            ctx.store,
            engine,
            ctx.work / "deltas",
            journal,
            factory.destination_for,
            version,
            on_result,
        )
    finally:
        factory.close()
