"""Skipping the member diff when a snapshot already holds exactly the desired members.

After a change landed whole, apply records in the destination's state entry which source
bytes (their data pin) and which reading (segops.engine.desired.reading_digest) gave the
members its snapshot holds. A plan that meets the same pin, the same reading and the same
snapshot knows the diff is empty without reading a member: the digests decide, never a
date or a size. A record is offered to apply only when the source file did not change
(size, times, inode) from before its digest started until after the engine read it, so the
pin is the digest of the bytes that were read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from segops.model import DiffMode, DiffRequest, DiffResult, MemberCounts, SourceRead
from segops.planning.planner import Decision

FileIdentity = tuple[int, int, int, int, int]


def identities(root: Path, paths: Iterable[str]) -> dict[str, FileIdentity | None]:
    """Return what identifies each file's bytes on disk now (None: not a local file)."""
    found: dict[str, FileIdentity | None] = {}
    for name in sorted(set(paths)):
        try:
            st = os.stat(root / name)
        except OSError:
            found[name] = None
            continue
        found[name] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return found


_PROBE_BYTES = 1 << 20


def probe(path: Path) -> str:
    """Return "<size>:<sha256 of the first and last MiB>" of a file ("" when unreadable).

    A cheap necessary condition: two files with different probes differ, so a plan need not
    wait for the whole file's digest to know that it must diff. Equal probes decide nothing.
    """
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            digest = hashlib.sha256(handle.read(_PROBE_BYTES))
            if size > _PROBE_BYTES:
                handle.seek(max(_PROBE_BYTES, size - _PROBE_BYTES))
                digest.update(handle.read(_PROBE_BYTES))
    except OSError:
        return ""
    return f"{size}:{digest.hexdigest()}"


def candidate(decision: Decision, reading: str | None) -> SourceRead | None:
    """Return the recorded read a plain merge diff may reuse (its pin is still to compare)."""
    want, have = decision.desired, decision.applied
    if decision.mode is not DiffMode.MERGE or want is None or have is None:
        return None
    if want.source.path is None or have.source is None or have.pending:
        return None
    if have.source.reading != reading or not have.source.probe:
        return None
    return have.source


def unchanged(request: DiffRequest, read: SourceRead) -> DiffResult:
    """Return the result of a diff known to be empty: the snapshot is the desired set."""
    assert request.applied is not None
    count = request.applied.count
    return DiffResult(request.address, MemberCounts(count, count, skipped=read.skipped), None)


def stable(
    before: Mapping[str, FileIdentity | None], after: Mapping[str, FileIdentity | None]
) -> set[str]:
    """Return the files that stayed the same local file, untouched, between two looks."""
    return {p for p, ident in before.items() if ident is not None and after.get(p) == ident}
