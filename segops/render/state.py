"""The state as people read it: `segops state list` and `segops state show ADDRESS`. Pure.

Counts, settings and digests only: a member identifier never appears here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from segops.model import Platform
from segops.state.model import DestinationState, LastWrite, State


@dataclass(frozen=True, slots=True)
class Finding:
    """What `segops explain` says of one identifier at one destination address."""

    address: str
    desired: bool
    where: str  # why it is desired or not, in words (never an identifier)
    applied: bool | None  # None: the state has nothing at this address
    last: LastWrite | None = None  # what last wrote the state entry
    in_flight: bool = False  # an interrupted apply has operations of this address


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


def render_findings(findings: Sequence[Finding]) -> str:
    """Return what `segops explain` found, per destination; the identifier is never shown."""
    if not findings:
        return "No destination in the manifests or the state.\n"
    blocks = []
    for f in findings:
        lines = [f.address, f"  desired: {'yes' if f.desired else 'no'}: {f.where}"]
        if f.applied is None:
            lines.append("  applied: no: the state has nothing at this address")
        else:
            if f.applied:
                last = f" (entry last written by {f.last.run}, {f.last.by})" if f.last else ""
                lines.append(f"  applied: yes: the state's snapshot holds it{last}")
            else:
                lines.append("  applied: no")
        if f.in_flight:
            lines.append("  ! an interrupted apply has operations of this destination in flight")
        upshot = _upshot(f)
        if upshot:
            lines.append(f"  next apply: {upshot}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + "\n"


def _upshot(finding: Finding) -> str:
    if finding.desired and not finding.applied:
        return "adds it"
    if finding.applied and not finding.desired:
        return "removes it"
    return ""
