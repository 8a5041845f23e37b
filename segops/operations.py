"""The steps behind each command, wired together: load, plan, apply.

Each function takes what it needs and returns values; printing and exit codes belong
to the CLI.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from segops import observe
from segops.apply.journal import ApplyJournal, JournalResources
from segops.apply.loop import ApplyReport, apply_plan
from segops.config.credentials import Credentials
from segops.config.credentials import resolve as resolve_credentials
from segops.destinations import ApplyResult
from segops.destinations.factory import DestinationFactory
from segops.destinations.platform import Estimator
from segops.destinations.registry import platform_spec
from segops.engine.interface import DeferredEngine, MemberEngine, open_engine
from segops.errors import (
    LostStateError,
    PlanError,
    Problem,
    SourceError,
    StalePlanError,
    StateError,
    UsageError,
)
from segops.model import (
    DataPin,
    Destination,
    DestinationChange,
    DiffResult,
    EngineKind,
    MemberRow,
    Plan,
    S3StateSettings,
    SourceRead,
    Workspace,
)
from segops.planning import planner, reuse
from segops.planning.guards import with_guards
from segops.planning.inputs import InputDigests, Pins, definitions
from segops.planning.moves import Move, find_moves, selected_moves
from segops.planning.planfile import PLAN_KEY_ENV, SavedPlan, plan_key, read_plan
from segops.planning.schedule import with_schedule
from segops.planning.selection import Selection
from segops.planning.verify import (
    Verified,
    data_changes,
    definition_changes,
    expected_segments,
    mismatch,
    parse_selection,
    plan_differences,
    refresh_lines,
    segment_differences,
)
from segops.state import Records, StateBackend
from segops.state.local import LocalStateStore
from segops.state.migrate import Target, copy_state, moved_record
from segops.state.model import DestinationState, LockInfo, State
from segops.ui.interrupt import cleanup, engine_stopped_by_ctrl_c, signals_held

log = logging.getLogger("segops.plan")


@dataclass(frozen=True, slots=True)
class Context:
    """A loaded workspace with its state store and a scratch folder for one command."""

    workspace: Workspace
    store: StateBackend
    work: Path
    # --allow-new-state: plan against no state, and let apply set a lost state's traces aside
    allow_new_state: bool = False
    # What the last plan's diffs read, by address: apply records it for the next no-change plan.
    reads: dict[str, SourceRead] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return Path(self.workspace.root)


def check_allow_new_state(ctx: Context) -> None:
    """Refuse --allow-new-state when no state is lost: left in a script, it would hide one."""
    if not ctx.allow_new_state:
        return
    try:
        ctx.store.read()
    except LostStateError:
        return
    raise UsageError(
        "--allow-new-state: there is no lost state to set aside (state.json is there, or the "
        "state folder is empty); drop the option, so that it cannot hide a lost state later"
    )


def planning_state(ctx: Context) -> State | None:
    """Return the state plans are made against; None for one with nothing written yet.

    Raises:
        LostStateError: state.json is gone but traces remain, without --allow-new-state.
    """
    try:
        state = ctx.store.read()
    except LostStateError:
        if not ctx.allow_new_state:
            raise
        return None
    # A first apply that began but wrote nothing (serial 0) planned against no state too.
    return state if state is not None and state.serial > 0 else None


def claim_state(ctx: Context, version: str) -> State | None:
    """Return the state apply works on; with --allow-new-state, set a lost one aside first.

    The caller holds the lock.
    """
    try:
        return ctx.store.read()
    except LostStateError:
        if not ctx.allow_new_state:
            raise
        return ctx.store.abandon(State(str(uuid.uuid4()), 0, version))


def store_for(workspace: Workspace, work: Path) -> StateBackend:
    """Return the state store segops.yaml names; `work` is the command's scratch folder."""
    if workspace.state_s3 is not None:
        return s3_store(workspace.state_s3, work)
    return LocalStateStore(Path(workspace.root) / workspace.state_path)


def s3_store(
    settings: S3StateSettings, work: Path, origin: str = "segops.yaml: state."
) -> StateBackend:
    """Return the S3 store at `settings` (boto3 is imported only now, for S3 states)."""
    from segops.state.s3 import S3StateStore
    from segops.state.s3io import S3Location

    location = S3Location(
        settings.bucket, settings.prefix, settings.region, settings.endpoint_url, origin
    )
    return S3StateStore(location, work)


def migrate_state(ctx: Context, target: Target) -> tuple[State, int, StateBackend]:
    """Move the state to `target` under both locks; return it, the entries copied, the store.

    segops.yaml is left as it is (it is reviewed in git): the caller says what to change,
    and the old store, marked moved, refuses every use until it names the new one.
    """
    target.check(ctx.root)
    if target.backend == "local":
        store: StateBackend = LocalStateStore(ctx.root / (target.path or ".segops"))
    else:
        assert target.bucket is not None
        given = {"prefix": target.prefix} if target.prefix else {}
        settings = S3StateSettings(target.bucket, region=target.region, **given)
        settings = replace(settings, endpoint_url=target.endpoint_url)
        store = s3_store(settings, ctx.work / "target", origin="--")
    if store.describe() == ctx.store.describe():
        raise UsageError(f"the state is already in {store.describe()}")
    lock, created = take_lock(ctx.store, "state migrate")
    try:
        their_lock, their_created = take_lock(store, "state migrate")
        try:
            state, count = copy_state(ctx.store, store, ctx.work)
            ctx.store.retire(moved_record(state, store, target.config()))
        finally:
            release_lock(store, their_lock, their_created)
    finally:
        release_lock(ctx.store, lock, created)
    return state, count, store


def take_lock(store: StateBackend, operation: str) -> tuple[LockInfo, list[Path]]:
    """Take the state lock; return it and the local folders taking it created (deepest first)."""
    folder = store.path if isinstance(store, LocalStateStore) else None
    created = [p for p in (folder, *folder.parents) if not p.exists()] if folder else []
    return store.lock(operation), created


def release_lock(store: StateBackend, lock: LockInfo, created: list[Path]) -> None:
    """Release `lock` and remove the folders its taking created that are still empty.

    A command that fails (bad rows found while planning) leaves the workspace as it was:
    no empty `.segops/` behind. Called from a `finally` while an error propagates, a failure
    to unlock (the lock was taken over by a run that force-unlocked this one, the storage
    is unreachable) leaves that first error to be reported: it says what went wrong.
    """
    failing = sys.exc_info()[1]

    def release() -> None:
        try:
            store.unlock(lock.id)
        except StateError:
            if failing is None:
                raise
            return
        for folder in created:  # one that holds anything (state was written) stops the walk
            try:
                folder.rmdir()
            except OSError:
                break

    cleanup(release)  # a SIGTERM that comes now ends the run once the lock is released


@contextmanager
def engine_for(ctx: Context) -> Iterator[MemberEngine]:
    """Give the member engine of one command; Ctrl-C interrupts its queries."""
    ws = ctx.workspace

    def opened() -> MemberEngine:
        shared = None
        if ws.engine.kind is EngineKind.SPARK:  # a state on S3 is the executors' folder too
            folder = getattr(ctx.store, "shared_folder", None)
            shared = folder() if folder is not None else None
        with signals_held():  # DuckDB's module and first connection load whole
            return open_engine(
                ctx.root, ctx.work, ws.engine, ws.source_connections, os.environ, shared
            )

    engine = DeferredEngine(opened, ctx.work)
    try:
        with engine_stopped_by_ctrl_c(engine.interrupt):
            yield engine
    finally:
        engine.close()


def validate_workspace(ctx: Context) -> int:
    """Check every source's columns, and every row of inline sources (file data is `plan`'s).

    Returns the number of destinations checked; raises SourceError with every problem.
    """
    problems: list[Problem] = []
    with engine_for(ctx) as engine:
        for destination in ctx.workspace.destinations:
            try:
                engine.check_source(destination)
            except SourceError as exc:
                problems.extend(exc.problems)
    if problems:
        raise SourceError(problems)
    return len(ctx.workspace.destinations)


def make_plan(
    ctx: Context,
    engine: MemberEngine,
    version: str,
    selection: Selection | None = None,
    destroy: bool = False,
    replace_addresses: Sequence[str] = (),
) -> Plan:
    """Read state and sources, diff members, and return the plan; deltas go to work/deltas.

    With a selection, destinations it leaves out are neither planned nor destroyed; a rename
    (a move) is planned with its new address, wherever its old one is. With `destroy`,
    every selected destination in the state is destroyed. `replace_addresses` are sent whole
    again (--replace).

    Raises:
        UsageError: a --replace address that is not both in the manifests and in the state,
            or a selection that picks only the old address of a move.
    """
    selection = selection or Selection()
    state = planning_state(ctx)
    ws = ctx.workspace
    applied = state.destinations if state else ()
    everything = ws.destinations
    moves = find_moves(everything, applied, ws.moved) if not destroy else ()
    picked = [d for d in everything if selection.picks(d.address, d.segment)]
    desired = [] if destroy else picked
    old_selected = {e.address for e in applied if selection.picks(e.address, e.segment)}
    planned, held = selected_moves(moves, {d.address for d in desired}, old_selected)
    if held:
        lines = ", ".join(f"{m.old} moved to {m.new}" for m in moves if m.old in held)
        raise UsageError(
            f"the selection picks only the old address of a move ({lines}): select the new "
            "one too (the old address is not destroyed: its platform segment is still wanted)"
        )
    _check_replace(replace_addresses, desired, applied, planned)
    files = [d.source.path for d in desired if d.source.path is not None]
    looked = reuse.identities(ctx.root, files)  # before the digests start
    # runs beside the diff, which reads the same files
    digests = InputDigests(ws, {d.segment for d in picked})
    considered = state
    if state is not None:
        coming = {m.old for m in planned}
        kept = tuple(d for d in applied if d.address in old_selected or d.address in coming)
        considered = replace(state, destinations=kept)
    if state is None:
        log.info("no state yet: every desired member is new")
    else:
        log.info("state: lineage %s, serial %d", state.lineage, state.serial)
    decisions = planner.decide(
        desired,
        considered,
        {c.name for c in ws.connections},
        planned,
        frozenset(replace_addresses),
        destroy,
    )
    engine.prepare([d.desired for d in decisions if d.desired is not None])
    results: dict[str, DiffResult] = {}
    readings: dict[str, str] = {}
    probes: dict[str, str] = {}
    resend = set(replace_addresses)  # a full resend is never skipped
    sizes = {d.address: _source_size(ctx, d.request.desired) for d in decisions}
    total = sum(sizes.values())
    with observe.step("Diffing members", len(decisions), "destinations", total) as step:
        jobs: list[tuple[planner.Decision, Path | None]] = []
        for decision in decisions:
            request = decision.request
            want = decision.desired
            reading = engine.reading(want) if want is not None and want.source.path else None
            if reading is not None:
                readings[decision.address] = reading
            # checked against its digest even when the diff is skipped: damage is never hidden
            base = request.applied
            snapshot = ctx.store.snapshot_path(base.sha256) if base else None
            prior = reuse.candidate(decision, reading) if decision.address not in resend else None
            if prior is not None and want is not None and want.source.path is not None:
                path = want.source.path
                same = probes.setdefault(path, reuse.probe(ctx.root / path))
                if same == prior.probe and digests.pin(path) == prior.pin:
                    results[decision.address] = reuse.unchanged(request, prior)
                    log.info("%s: source and snapshot as last applied: diff skipped",
                             decision.address)  # fmt: skip
                    step.advance(1, size=sizes[decision.address])
                    continue
            jobs.append((decision, snapshot))
        began = time.monotonic()
        diffed = engine.diffs([(d.request, s) for d, s in jobs], ctx.work / "deltas")
        for (decision, _), result in zip(jobs, diffed, strict=True):
            results[decision.address] = result
            now = time.monotonic()
            log.info(
                "%s: diffed in %.2f s",
                decision.address,
                now - began,
                extra={"event": "diff", "address": decision.address},
            )
            began = now
            step.advance(1, size=sizes[decision.address])
    pins = digests.result(_external_pins(engine, desired))
    _record_reads(ctx, decisions, results, readings, pins, looked, probes)
    plan = planner.build_plan(decisions, results, state, pins, version)
    plan = replace(
        plan,
        selection=selection.text,
        destroy=destroy,
        replace=tuple(sorted(set(replace_addresses))),
    )
    counters = estimators(ws, ctx.store.records, time.time())
    plan = with_schedule(plan, counters, _rows_of(ctx, engine))
    return with_guards(plan, {s.name: s.safety for s in ws.segments}, ws.safety)


def _external_pins(engine: MemberEngine, desired: Sequence[Destination]) -> list[DataPin]:
    """Return the pins of the objects and query results the planned segments read."""
    first = {d.segment: d for d in reversed(desired)}  # one destination per segment
    return [
        DataPin(segment, what, pin)
        for segment, destination in sorted(first.items())
        for what, pin in engine.data_pins(destination)
    ]


def _check_replace(
    addresses: Sequence[str],
    desired: Sequence[Destination],
    applied: Sequence[DestinationState],
    moves: Sequence[Move],
) -> None:
    wanted = {d.address for d in desired}
    have = {e.address for e in applied} | {m.new for m in moves}
    for address in addresses:
        if address not in wanted:
            raise UsageError(
                f"--replace {address}: not a destination the plan keeps (it is not in the "
                "manifests, or the selection or --destroy leaves it out)"
            )
        if address not in have:
            raise UsageError(
                f"--replace {address}: the state has nothing applied there yet: a plan creates "
                "it with every desired member anyway"
            )


def _source_size(ctx: Context, destination: Destination | None) -> int:
    """Return the bytes of the destination's source file (0 for inline members)."""
    path = destination.source.path if destination is not None else None
    try:
        return (ctx.root / path).stat().st_size if path else 0
    except OSError:
        return 0


def _record_reads(
    ctx: Context,
    decisions: Sequence[planner.Decision],
    results: Mapping[str, DiffResult],
    readings: Mapping[str, str],
    pins: Pins,
    looked: Mapping[str, reuse.FileIdentity | None],
    probes: dict[str, str],
) -> None:
    """Keep, for apply, what each diff read, when its source file stayed untouched."""
    unchanged = reuse.stable(looked, reuse.identities(ctx.root, looked))
    pin_of = {(p.segment, p.source): p.pin for p in pins.data}
    for decision in decisions:
        want, address = decision.desired, decision.address
        ctx.reads.pop(address, None)
        if want is None or want.source.path not in unchanged or address not in readings:
            continue
        pin = pin_of.get((want.segment, want.source.path))
        probe = probes.get(want.source.path) or reuse.probe(ctx.root / want.source.path)
        if pin is not None and probe:
            skipped = results[address].counts.skipped
            ctx.reads[address] = SourceRead(pin, readings[address], skipped, probe)


def _rows_of(
    ctx: Context, engine: MemberEngine
) -> Callable[[DestinationChange], Iterator[MemberRow]]:
    """Return a reader of a planned change's delta rows (counts that depend on line sizes)."""

    def rows(change: DestinationChange) -> Iterator[MemberRow]:
        assert change.delta is not None, "a change that sends members has a delta file"
        return engine.read_delta(ctx.work / "deltas" / change.delta.name, change.encoding)

    return rows


def estimators(workspace: Workspace, records: Records, now: float) -> dict[str, Estimator]:
    """Return the operation estimator of every connection whose platform is installed."""
    found = {}
    for connection in workspace.connections:
        spec = platform_spec(connection.target)
        if spec is not None:
            found[connection.name] = spec.estimator(connection, records, now)
    return found


def read_saved_plan(path: Path, env: Mapping[str, str]) -> SavedPlan:
    """Read a plan file for apply: every entry checked, its signature too when a key is set.

    Raises:
        PlanError: the file is not a sound plan file, or is signed and no key is set.
    """
    key = plan_key(env)
    saved = read_plan(path, key)
    if key is None and saved.signed:
        raise PlanError(
            f"{path}: the plan is signed, but {PLAN_KEY_ENV} is not set: set it to the key "
            "the plan was made with, so that its signature is checked"
        )
    return saved


def verify_saved_plan(
    ctx: Context,
    engine: MemberEngine,
    saved: Plan,
    version: str,
    origin: str,
    refuse_data_changes: bool = False,
) -> Verified:
    """Recompute `saved` from the workspace and the state; return the recomputed plan.

    The caller holds the lock. Apply then sends the recomputed plan and its own delta files:
    for segments whose data did not move they match the saved ones byte for byte (their
    digests are compared); for the others they are the diff of the current data.

    Raises:
        StalePlanError: the state or a definition moved since the plan was made (or its
            data, with `refuse_data_changes`).
        PlanError: the plan says anything the workspace and the state do not give.
    """
    state = planning_state(ctx)
    _check_not_stale(planner.stale_reasons(saved, state))  # before any work
    applied = state.destinations if state else ()
    if saved.destroy:
        known = {d.segment for d in applied}
    else:  # a moved entry is planned under its new address
        ws = ctx.workspace
        gone = {m.old for m in find_moves(ws.destinations, applied, ws.moved)}
        kept = {d.segment for d in applied if d.address not in gone}
        known = {s.name for s in ws.segments} | kept
    picked = expected_segments(parse_selection(saved.selection, origin), known)
    segments = frozenset(c.segment for c in saved.changes)
    # With the segments the selection picks now: a manifest added since is a definition too.
    now = definitions(ctx.workspace, segments | (picked or frozenset()))
    _check_not_stale(definition_changes(saved.definitions, now), "a definition changed")
    if problems := segment_differences(saved, picked):
        raise mismatch(origin, problems)
    targets = parse_selection(saved.selection, origin).targets
    again = Selection(changed=segments, text=saved.selection, targets=targets)
    fresh = make_plan(ctx, engine, version, again, saved.destroy, saved.replace)
    moved = data_changes(saved, fresh)
    if refuse_data_changes:
        reasons = [
            f"{s} changed (data of segment {g})" for g, found in moved.items() for s in found
        ]
        _check_not_stale(reasons, "its data changed, and --data-changed=refuse")
    if problems := plan_differences(saved, fresh, moved):
        raise mismatch(origin, problems)
    return Verified(fresh, moved, tuple(refresh_lines(saved, fresh, moved)))


def _check_not_stale(reasons: Sequence[str], why: str = "") -> None:
    if reasons:
        listed = "\n".join(f"  - {r}" for r in reasons)
        raise StalePlanError(
            "the saved plan is stale: it no longer matches the state or the workspace"
            f"{f' ({why})' if why else ''}\n{listed}\n"
            "Run `segops plan` again and apply the new plan."
        )


def credentials_for(
    ctx: Context, plan: Plan, env: Mapping[str, str] | None = None
) -> dict[str, Credentials]:
    """Return the secrets of every connection `plan` sends members to.

    Raises:
        ManifestError: naming every variable that is not set.
    """
    used = {c.connection for c in plan.changes if c.members.changed}
    connections = [c for c in ctx.workspace.connections if c.name in used]
    return resolve_credentials(connections, os.environ if env is None else env)


def run_apply(
    ctx: Context,
    engine: MemberEngine,
    plan: Plan,
    version: str,
    on_result: Callable[[ApplyResult], None],
    env: Mapping[str, str] | None = None,
    credentials: Mapping[str, Credentials] | None = None,
    on_record: Callable[[Mapping[str, Any]], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyReport:
    """Apply `plan` (the caller holds the lock and has checked staleness).

    Every secret the plan needs is read from the environment first (unless the caller
    read them already, before asking for confirmation): a missing one stops the apply
    before anything is sent. `on_record` sees every journal entry once stored; `stop` and
    `sleep` are Ctrl-C's (segops.ui.interrupt).
    """
    if credentials is None:
        credentials = credentials_for(ctx, plan, env)
    journal = ApplyJournal(ctx.store.records)
    run = f"run-{plan.serial + 1:06d}"
    if on_record is not None:
        journal.listeners.append(on_record)
    factory = DestinationFactory(
        ctx.root,
        ctx.store.records,
        ctx.workspace,
        credentials,
        JournalResources(journal),
        run,
        stop,
        sleep,
    )
    vias = {c.name: str(c.platform) for c in ctx.workspace.connections}
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
            run=run,
            vias=vias,
            stop=stop,
            reads=ctx.reads,
        )
    finally:
        factory.close()
