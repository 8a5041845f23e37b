"""Kill `segops apply` at many seeded random moments; see tests/crash/harness.py.

python scripts/kill_trials.py --trials 2000 --seed 1 [--error-rate 0.1 --throttle-every 5]
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
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--throttle-every", type=int, default=0)
    args = parser.parse_args()
    faults = Faults(
        error_rate=args.error_rate,
        throttle_every=args.throttle_every,
        retry_after=1,
        seed=args.seed,
    )
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="segops-kill-") as tmp:
        stats = run_trials(Path(tmp), args.trials, args.seed, faults)
    took = time.monotonic() - start
    print(
        f"{stats.trials} trials converged ({stats.killed_before_end} killed mid-apply, "
        f"{stats.recoveries_needed} extra recovery runs) in {took:.0f} s; "
        f"faults: error_rate={args.error_rate} throttle_every={args.throttle_every}"
    )


if __name__ == "__main__":
    main()
