"""Tokens/s and peak memory of each CPU fine-tune recipe on bench's tiny Llama, beside the estimator.

Each recipe runs as `bench finetune tiny-llama --recipe R --device cpu` (an isolated child
process, a record per run) into a temporary results directory; the table is read back
from the records. On a CPU the measured peak is the process tree's RSS, which includes
the Python runtime and torch (~0.5 GiB), so it is not comparable with the estimator's
device-memory figure; the column is printed to show exactly that gap.
Usage: python scripts/bench_finetune_cpu.py [--steps N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.records.store import iter_records

RECIPES = ("lora-sft", "dpo", "reward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        for recipe in RECIPES:
            subprocess.run([sys.executable, "-m", "bench.cli", "finetune", "tiny-llama", "--recipe", recipe,
                            "--device", "cpu", "--steps", str(args.steps), "--learning-rate", "1e-3",
                            "--results-dir", str(results)], check=True, capture_output=True)
        records = {r.config["recipe"]["id"]: r for r in iter_records(results)}
    print(f"{'recipe':10s} {'steps':>5s} {'loss first':>10s} {'loss last':>9s} {'tokens/s':>9s} {'step s':>7s} "
          f"{'peak RSS GiB':>12s} {'estimate GiB':>12s}")
    for recipe in RECIPES:
        r = records[recipe]
        m = {k: v.value for k, v in r.metrics.items()}
        estimate = r.details["estimate"]["training_memory_bytes"] / 2**30
        print(f"{recipe:10s} {m['steps']:5d} {m['loss_first']:10.3f} {m['loss_last']:9.3f} "
              f"{m['tokens_per_s']:9.0f} {m['step_time_s']:7.3f} {m['peak_memory_bytes'] / 2**30:12.2f} "
              f"{estimate:12.2f}")
    print("(tiny-llama: 1.7M parameters, LoRA rank 16; CPU, fp32; estimate = bench's GPU training-memory formula)")


if __name__ == "__main__":
    main()
