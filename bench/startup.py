"""Benchmark: start-up of `segops --version`, `version`, `--help`, and `validate` of manifests/.

Each command runs --repeat times in a fresh process (bytecode compiled first, as an
installed segops has it); the median and the fastest wall time are printed beside the
target. Also prints the ten slowest imports of each command (`python -X importtime`).

    python bench/startup.py
    python bench/startup.py --repeat 21 --imports 0
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    (["--version"], 0.15),
    (["version"], 0.15),
    (["--help"], 0.15),
    (["-C", str(ROOT / "manifests"), "validate"], 0.5),
]
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def segops() -> list[str]:
    script = Path(sys.executable).with_name("segops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "segops"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def slowest_imports(args: list[str], env: dict[str, str], count: int) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "segops", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    top = []
    for match in _LINE.finditer(done.stderr):
        if len(match[3]) == 1:  # imported by the program itself, not by another module
            top.append((int(match[2]), match[4]))
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in sorted(top, reverse=True)[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--imports", type=int, default=10, help="slowest imports shown")
    options = parser.parse_args()
    compileall.compile_dir(ROOT / "segops", quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base = segops()
    print(f"segops start-up, {options.repeat} runs each (median / fastest)")
    for args, target in COMMANDS:
        runs = [timed([*base, *args], env) for _ in range(options.repeat)]
        median = statistics.median(runs)
        verdict = "ok" if median < target else "OVER TARGET"
        shown = " ".join(a if not a.startswith("/") else Path(a).name + "/" for a in args)
        print(
            f"  segops {shown:<28} {median:6.3f} s / {min(runs):6.3f} s   "
            f"target {target:.2f} s: {verdict}"
        )
        for line in slowest_imports(args, env, options.imports):
            print(f"      {line}")


if __name__ == "__main__":
    main()
