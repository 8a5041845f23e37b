"""Named points of apply where the kill-trial harness stops segops, for crash tests only.

With `SEGOPS_TEST_KILL_AT=<point>[#<n>]` in its environment, segops kills itself (SIGKILL,
nothing flushed or cleaned up) the n-th time (default: the first) any thread reaches
`<point>`. Without the variable every call is a dictionary lookup and nothing else. The
points, in the order one operation meets them:

    apply:start          the state lock is held, the plan is about to be sent
    mics:intent          journal says intent; the upload is not sent
    http:mid-request     half of a request's bytes are on the wire
    mics:uploaded        mediarithmics answered the upload; the journal does not know
    mics:accepted        journal says accepted; the execution is not polled yet
    mics:confirmed       journal says confirmed
    moe:intent           journal says intent; the member file is not published
    moe:published        the member file has a URL; MoEngage was not called
    moe:answered         MoEngage accepted the call; the journal does not know
    moe:accepted         journal says accepted; the result (callback) is not in
    moe:confirmed        journal says confirmed (the callback came)
    apply:confirmed      a destination's change is confirmed; its state is not written
    apply:state-written  its state is written; its journal entries are not dropped yet
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Final

VARIABLE: Final = "SEGOPS_TEST_KILL_AT"
POINTS: Final = (
    "apply:start",
    "mics:intent",
    "http:mid-request",
    "mics:uploaded",
    "mics:accepted",
    "mics:confirmed",
    "moe:intent",
    "moe:published",
    "moe:answered",
    "moe:accepted",
    "moe:confirmed",
    "apply:confirmed",
    "apply:state-written",
)


def _target(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, nth = value.partition("#")
    if point not in POINTS or not (nth.isdigit() or nth == ""):
        raise SystemExit(f"{VARIABLE}={value!r}: not one of {', '.join(POINTS)} [#n]")
    return point, int(nth or 1)


_TARGET = _target(os.environ.get(VARIABLE))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def armed(point: str) -> bool:
    """Return whether reaching `point` may kill this process (callers may prepare for it)."""
    return _TARGET is not None and _TARGET[0] == point


def reached(point: str) -> None:
    """Note that `point` is reached; kill this process if this is the armed hit."""
    if _TARGET is None or _TARGET[0] != point:
        return
    with _lock:
        _hits[point] = _hits.get(point, 0) + 1
        if _hits[point] == _TARGET[1]:
            os.kill(os.getpid(), signal.SIGKILL)
