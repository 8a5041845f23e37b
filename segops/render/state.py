"""The state as people read it: `segops state list` and `segops state show ADDRESS`. Pure.

Counts, settings and digests only: a member identifier never appears here.
"""

from __future__ import annotations

import json

from segops.model import Platform
from segops.state.model import DestinationState, State


def render_list(state: State | None) -> str:
    """Return every address in the state, one a line ("" when there is none)."""
    return "".join(f"{d.address}\n" for d in state.destinations) if state else ""


def render_entry(entry: DestinationState, state: State) -> str:
    """Return what the state records for one destination, for people."""
    lines = [
        f"# {entry.address}",
        f"segment:       {entry.segment}",
        f"connection:    {entry.connection}{_via(entry)}",
        f"platform:      {entry.platform}",
        f"members:       {entry.member_count:,}{_attributes(entry)}",
    ]
    if entry.pending:
        when = f"; next: {entry.pending_eta}" if entry.pending_eta else ""
        lines.append(
            f"pending:       {entry.pending} operation(s) held back by the platform quota{when}"
        )
    if entry.unconfirmed:
        lines.append(
            "confirmation:  accepted, unconfirmed: the platform accepted the last members "
            "sent and nothing confirmed they landed (no callback configured)"
        )
    lines.append(f"settings:      (sha256 {entry.settings_digest})")
    width = max((len(k) for k, _ in entry.settings), default=0)
    lines += [f"  {k:<{width}} = {json.dumps(v)}" for k, v in entry.settings]
    lines.append(f"snapshot:      sha256 {entry.snapshot.sha256} ({entry.snapshot.encoding} keys)")
    if entry.last is not None:
        lines.append(f"last written:  {entry.last.run} ({entry.last.by}) at {entry.last.at}")
    else:
        lines.append("last written:  before segops recorded it")
    lines.append(f"state:         lineage {state.lineage}, serial {state.serial}")
    return "\n".join(lines) + "\n"


def _via(entry: DestinationState) -> str:
    if entry.via == Platform.FILES:
        return f" (platform files: writes what {entry.platform} would receive)"
    return ""


def _attributes(entry: DestinationState) -> str:
    attributes = entry.snapshot.attributes
    return f" (per-member attributes: {', '.join(attributes)})" if attributes else ""
