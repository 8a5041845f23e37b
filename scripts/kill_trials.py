"""Kill `segops apply` at named points and timed moments, many times; see tests/crash/harness.py.

python scripts/kill_trials.py --trials 2000 --timed 500 --seed 1 [--error-rate 0.1]
                              [--throttle-every 5] [--threads 2]

`--threads 2` gives the member engine two threads: small diffs then run side by side and
apply writes a change's snapshot while the next destination sends (segops.apply.loop).

Prints the distribution of kill points: every kill lands after the state lock is taken.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulators._server import Faults  # noqa: E402
from tests.crash.harness import run_trials  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="kills at named points")
    parser.add_argument("--timed", type=int, help="kills at timed moments (default trials/4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--throttle-every", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="engine.threads of the workspace")
    args = parser.parse_args()
    faults = Faults(
        error_rate=args.error_rate,
        throttle_every=args.throttle_every,
        retry_after=1,
        seed=args.seed,
    )
    timed = args.trials // 4 if args.timed is None else args.timed
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="segops-kill-") as tmp:
        engine = {"threads": args.threads}
        stats = run_trials(Path(tmp), args.trials, args.seed, faults, timed, engine=engine)
    took = time.monotonic() - start
    print(stats.report())
    print(
        f"all {stats.trials} trials converged in {took:.0f} s; "
        f"faults: error_rate={args.error_rate} throttle_every={args.throttle_every}; "
        f"engine threads: {args.threads}"
    )


if __name__ == "__main__":
    main()
