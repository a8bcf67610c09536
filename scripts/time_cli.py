"""Wall time of the commands that need no model: `bench --help`, `bench models`, `bench plan --claims`.

Each runs as a whole new process (interpreter start-up included), as a user meets it.
Usage: python scripts/time_cli.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["models"], ["gpus"], ["plan", "mistral-3-small", "--gpu", "4090"], ["plan", "--claims"],
            ["verdicts"]]


def time_command(args: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs + 1):  # the first run warms the file cache and is dropped
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bench.cli", *args], check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(f"{'command':40s} {'min s':>7s} {'median s':>9s} {'max s':>7s}  ({runs} runs)")
    for args in COMMANDS:
        s = time_command(args, runs)
        print(f"{'bench ' + ' '.join(args):40s} {min(s):7.3f} {statistics.median(s):9.3f} {max(s):7.3f}")


if __name__ == "__main__":
    main()
