"""Wall time of `bench report` over many records (5,000 by default), as a new process, against its 10 s budget.

Records are constructed (inference, fine-tune and eval kinds, spread over models, cards
and nights, so regressions and the leaderboard have work to do) and written to a
temporary results directory; then `bench report` runs on them several times. The slowest
run must stay within the budget; the exit code is 1 when it does not.
Usage: python scripts/time_report.py [--records N] [--runs R] [--budget S]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.records.schema import Metric, ModelRef, RunRecord
from bench.records.store import write_record

MODELS = ["mistral-3b", "mistral-small-22b", "mistral-3-small", "mixtral-8x22b", "llama-4-scout"]
CARDS = ["rtx-4090", "a100-80gb", "h100-80gb", "l40s"]


def synthetic_record(i: int, rng: random.Random) -> RunRecord:
    kind = rng.choice(["inference", "inference", "finetune", "eval"])
    model, card = rng.choice(MODELS), rng.choice(CARDS)
    metrics = {"peak_memory_bytes": Metric(value=rng.uniform(4, 70) * 2**30, unit="bytes")}
    config: dict = {}
    if kind == "inference":
        decode = rng.uniform(20, 200)
        metrics.update(decode_tokens_per_s=Metric(value=decode, unit="tokens/s"),
                       throughput_tokens_per_s=Metric(value=decode * 6, unit="tokens/s"),
                       roofline_fraction=Metric(value=rng.uniform(0.4, 0.9), unit="ratio"))
        config = {"scenario": {"backend": "vllm", "batch": 8, "prompt_len": 128, "output_len": 64, "context": None,
                               "engine": {"quant": rng.choice(["bf16", "fp8", "nf4"])}}}
    elif kind == "finetune":
        metrics.update(loss_first=Metric(value=2.0, unit="loss"), loss_last=Metric(value=1.5, unit="loss"),
                       tokens_per_s=Metric(value=rng.uniform(500, 3000), unit="tokens/s"))
        config = {"recipe": {"id": "qlora-sft", "method": "qlora", "quant": "nf4"}}
    else:
        acc = rng.uniform(0.3, 0.8)
        metrics = {"scores": Metric(value={"arc_challenge": {"acc": acc, "acc_stderr": 0.013}}, unit="score"),
                   "limit": Metric(value=None, unit="docs"), "num_fewshot": Metric(value=0, unit="shots")}
    return RunRecord(
        schema_version=1, id=f"2026110{i % 9 + 1}T030000Z-{kind}-{model}-{i:06x}", kind=kind, status="ok",
        error=None, model=ModelRef(id=model, repo="org/repo", revision="main", resolved_revision="0" * 40,
                                   weights="real"),
        config=config, hardware={"device_name": "NVIDIA H100 80GB HBM3", "target": card, "emulated": True},
        software={"vllm": "0.32.0", "bench_commit": "0" * 40}, metrics=metrics,
        started_at=f"2026-11-0{i % 9 + 1}T03:00:00+00:00", duration_s=60.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds the slowest run may take")
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        results, out = Path(tmp) / "results", Path(tmp) / "site"
        for i in range(args.records):
            write_record(synthetic_record(i, rng), results)
        samples, cpu = [], []
        for _ in range(args.runs):
            start, used = time.perf_counter(), _children_cpu_s()
            subprocess.run([sys.executable, "-m", "bench.cli", "report", "--out", str(out), "--results-dir",
                            str(results)], check=True, capture_output=True)
            samples.append(time.perf_counter() - start)
            cpu.append(_children_cpu_s() - used)
    within = max(samples) <= args.budget
    print(f"{'command':14s} {'records':>8s} {'runs':>5s} {'min s':>7s} {'median s':>9s} {'max s':>7s} "
          f"{'cpu s':>7s} {'budget s':>9s} {'within':>7s}")
    print(f"{'bench report':14s} {args.records:8d} {args.runs:5d} {min(samples):7.2f} "
          f"{statistics.median(samples):9.2f} {max(samples):7.2f} {statistics.median(cpu):7.2f} {args.budget:9.1f} "
          f"{'yes' if within else 'NO':>7s}")
    print(f"load average during the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall time grows with it; cpu s, user + system of the report process, does not)")
    sys.exit(0 if within else 1)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
