"""CPU time of `bench plan --claims` against that of `import torch, transformers`, measured in the same run.

The ratio, not the seconds, is the figure to keep: both run as new processes on the same machine at
the same moment, interleaved, so a slower or busier machine moves both alike. CPU time is user plus
system of the child process (resource.getrusage RUSAGE_CHILDREN deltas), interpreter start-up included.
With --before DIR, `bench plan --claims` also runs from DIR (a copy of the tree before a change, its
`bench/` and `configs/`), interleaved with the others, so a change is measured against its ratio in one run.

Both sides run from bytecode, as Python runs any installed package by default: torch and transformers have
theirs from pip, and the untimed warm-up run writes bench's (`__pycache__/`, ignored by git). The children
run without PYTHONDONTWRITEBYTECODE, which some environments set: under it bench alone would be compiled
from source on every run (0.18 s of the 0.68 s `bench plan --claims` took before issue 22's third round),
a cost a user's installed copy never pays.
Usage: python scripts/time_plan.py [--runs N] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
PLAN = [sys.executable, "-m", "bench.cli", "plan", "--claims"]
IMPORTS = [sys.executable, "-c", "import torch, transformers"]


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The children's environment: ours, less PYTHONDONTWRITEBYTECODE (see the docstring).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cpu_of(argv: list[str], cwd: str | None = None) -> float:
    """CPU seconds one new process spends running `argv` (in `cwd`) to the end."""
    used = children_cpu_s()
    subprocess.run(argv, check=True, capture_output=True, cwd=cwd, env=CHILD_ENV)
    return children_cpu_s() - used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", help="a copy of the tree before a change: its `bench plan --claims` too")
    args = parser.parse_args()
    commands = {"bench plan --claims": (PLAN, ROOT), "import torch, transformers": (IMPORTS, ROOT)}
    if args.before:
        commands[f"bench plan --claims (in {args.before})"] = (PLAN, args.before)
    for argv, cwd in commands.values():  # warms the file cache and writes bench's bytecode; not counted
        cpu_of(argv, cwd)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # interleaved: a change in the machine's load falls on all alike
        for name, (argv, cwd) in commands.items():
            samples[name].append(cpu_of(argv, cwd))
    imports = statistics.median(samples["import torch, transformers"])
    print(f"{'command':44s} {'min cpu s':>10s} {'median cpu s':>13s} {'median / import':>16s}  "
          f"({args.runs} runs each, interleaved)")
    for name, s in samples.items():
        print(f"{name:44s} {min(s):10.3f} {statistics.median(s):13.3f} {statistics.median(s) / imports:16.3f}")
    print(f"load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
