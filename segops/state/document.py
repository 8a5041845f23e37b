"""state.json as bytes, shared by every store: its text, its parsing, and the lost-state message.

A store moves these bytes (a file, an S3 object); what they say and how they are checked
is the same everywhere, so a state migrated from one store to another reads the same.
"""

from __future__ import annotations

import json

from segops.errors import StateError
from segops.state.model import RECOVER_HINT, State, state_from_dict, state_to_dict

STATE = "state.json"
BACKUP = "state.json.backup"
PENDING = "new-state.json"  # the lineage of a first apply that has not written state yet
LOCK = "lock.json"
MOVED = "moved.json"  # where `segops state migrate` moved the state
SNAPSHOTS = "snapshots"


def state_text(state: State) -> str:
    """Return state.json's text: indented at the top, one line per destination.

    One line per destination keeps diffs readable and lets json's C encoder do the work:
    the pure-Python indenting encoder made every write cost O(destinations) seconds.
    """
    data = state_to_dict(state)
    entries = data.pop("destinations")
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in data.items()]
    body = ",\n".join(
        f"    {json.dumps(a)}: {json.dumps(e, sort_keys=False)}" for a, e in entries.items()
    )
    lines.append('  "destinations": {' + (f"\n{body}\n  " if body else "") + "}")
    return "{\n" + "\n".join(lines) + "\n}\n"


def parse_state(raw: bytes, where: str) -> State:
    """Return the state in `raw` (the bytes of state.json at `where`), its digests checked."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise StateError(f"{where}: not UTF-8 text: the file is damaged. {RECOVER_HINT}") from None
    except (ValueError, RecursionError) as exc:
        raise StateError(f"{where}: not valid JSON ({exc}). {RECOVER_HINT}") from None
    if not isinstance(data, dict):
        raise StateError(f"{where}: not a JSON object. {RECOVER_HINT}")
    return state_from_dict(data, where)


def parse_pending(raw: bytes, where: str) -> State:
    """Return the empty state of the first apply that new-state.json records."""
    try:
        data = json.loads(raw.decode("utf-8"))
        return State(str(data["lineage"]), 0, str(data["segops_version"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"{where}: unreadable ({type(exc).__name__}); it records the lineage "
            "of a first apply that was interrupted: if no state was ever written, delete it"
        ) from None


def pending_bytes(state: State) -> bytes:
    return json.dumps({"lineage": state.lineage, "segops_version": state.segops_version}).encode()


def digests(state: State | None) -> frozenset[str]:
    return state.snapshot_digests() if state is not None else frozenset()


def check_lineage(current: State | None, state: State, where: str) -> None:
    """Refuse to write `state` over a state of another lineage."""
    if current is not None and current.lineage != state.lineage:
        raise StateError(
            f"{where}: lineage {current.lineage} differs from the state being "
            f"written ({state.lineage}); refusing to overwrite another workspace's state"
        )


def lost_message(state_where: str, folder_where: str, traces: tuple[str, ...]) -> str:
    """Return why a state that is gone but left traces is not started afresh."""
    has_backup = BACKUP in traces
    how = (
        "To restore the state before the last write, run: segops state recover\n"
        if has_backup
        else "Restore the state folder from a copy if you have one.\n"
    )
    return (
        f"{state_where} is missing, but {folder_where} holds traces of an earlier state "
        f"({', '.join(traces[:8])}{', …' if len(traces) > 8 else ''}). segops will not start a "
        "new, empty state over them: every destination would be planned as new, and members "
        f"removed from the sources since would never be removed.\n{how}"
        "To start a new state anyway (the traces are moved to abandoned/), add "
        "--allow-new-state to `segops apply`."
    )


def moved_message(where: str, raw: bytes) -> str:
    """Return the error for a store whose state `segops state migrate` moved elsewhere."""
    try:
        record = json.loads(raw.decode("utf-8"))
        target, at = str(record["moved_to"]), str(record["at"])
        config = str(record.get("config", ""))
    except (ValueError, KeyError, TypeError):
        target, at, config = "another store (moved.json is unreadable)", "?", ""
    point = f"\n{config}" if config else ""
    return (
        f"{where}: the state was moved to {target} by `segops state migrate` ({at}); this copy "
        f"is kept only to go back. Point segops.yaml at the new store:{point}\n"
        f"To use this copy again instead, delete {where} (the state beside it is unchanged)."
    )


def damaged_check(raw: bytes | None, where: str) -> None:
    """Refuse `recover` over a state.json that reads fine (recover is for damage)."""
    if raw is None:
        return
    try:
        current = parse_state(raw, where)
    except StateError:
        return
    serial = current.serial if current else 0
    raise StateError(
        f"{where}: reads fine (serial {serial}); recover replaces a missing or "
        "damaged state only. To go back to the backup anyway, add --force"
    )
