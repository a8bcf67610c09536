"""Real-scale llama.cpp runs on this CPU: memory against the estimate, and speed against llama.cpp's own counters.

    python scripts/bench_llamacpp_cpu.py [--results-dir results/cpu] [--models qwen3-8b gemma-3-4b]

Each cell is a `bench run ... --backend llama.cpp --quant q4_k_m --weights synthetic --device cpu` of a
registry model's real shape (a random GGUF bench writes with llama.cpp's own quantizer), with the
context sized by --max-model-len (llama.cpp allocates the KV cache for it at load) and, for on-device
budgets, the edge target its buffers are held against. Weight repacking is off (BENCH_LLAMACPP_REPACK=0):
the repacked copy is this x86 CPU's kernel choice, not bytes a device holds. Run it on a quiet machine:
two busy cores halve the speeds.

Prints, per cell: bench plan's estimate (weights, KV, and the buffers llama.cpp allocates: the plan's
total less its runtime overhead) beside llama.cpp's buffers and the peak RSS;
and bench's prefill and decode rates over llama.cpp's own timing counters for the same run (fidelity).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.config.registry import load_registry
from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.records.store import iter_records
from bench.verdicts.evidence import llamacpp_held_bytes

# (model, context, edge budget the buffers are held against, or None)
CELLS = [
    ("mistral-3b", 4096, "edge-4gb"),
    ("mistral-3b", 32768, "edge-8gb"),
    ("mistral-3-small", 8192, "edge-8gb"),
    ("mistral-small-22b", 8192, None),
    ("qwen3-8b", 4096, None),
    ("gemma-3-4b", 4096, None),
    ("gemma-3-4b", 32768, None),  # 29 of its 34 layers keep a 1,024-token window: llama.cpp's SWA cache
]
RUN = ["--backend", "llama.cpp", "--quant", "q4_k_m", "--weights", "synthetic", "--device", "cpu", "--batch", "1",
       "--prompt-len", "128", "--output-len", "16", "--iterations", "2", "--min-duration", "0", "--timeout", "3000"]
GIB = 2**30


def run_cell(model: str, context: int, target: str | None, results: Path) -> str:
    before = {r.id for r in iter_records(results)}
    command = [sys.executable, "-m", "bench.cli", "run", model, *RUN, "--max-model-len", str(context),
               "--results-dir", str(results), *(["--gpu", target] if target else [])]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "BENCH_LLAMACPP_REPACK": "0"})
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
    (new,) = {r.id for r in iter_records(results)} - before
    return new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=Path("results/cpu"))
    parser.add_argument("--models", nargs="+", help="run only the cells of these registry models")
    args = parser.parse_args()
    registry = load_registry()
    rows = []
    for model, context, target in CELLS:
        if args.models and model not in args.models:
            continue
        record_id = run_cell(model, context, target, args.results_dir)
        record = next(r for r in iter_records(args.results_dir) if r.id == record_id)
        engine = record.details.get("engine") or {}
        plan = make_plan(PlanRequest(Subject.from_spec(registry.model(model)), quant="q4_k_m", context=context))
        held = sum(llamacpp_held_bytes(record).values())
        m = {k: v.value for k, v in record.metrics.items()}
        perf = engine.get("perf") or {}
        llama_decode = perf["n_eval"] / (perf["t_eval_ms"] / 1000) if perf.get("t_eval_ms") else None
        llama_prefill = (perf["n_prompt_eval"] / (perf["t_prompt_eval_ms"] / 1000)
                         if perf.get("t_prompt_eval_ms") else None)
        bench_prefill = 128 / m["ttft_s"] if m.get("ttft_s") else None
        memory = plan["memory"]
        rows.append((model, context, target or "-", record.status, memory["weights_bytes"] / GIB,
                     (engine.get("model_buffer_bytes") or 0) / GIB, memory["kv_cache_bytes"] / GIB,
                     (engine.get("kv_buffer_bytes") or 0) / GIB, memory["activations_bytes"] / GIB,
                     (engine.get("compute_buffer_bytes") or 0) / GIB,
                     (memory["total_bytes"] - memory["overhead_bytes"]) / GIB, held / GIB,
                     m.get("peak_memory_bytes", 0) / GIB,
                     bench_prefill, llama_prefill, m.get("decode_tokens_per_s"), llama_decode, record.id))
    print(f"{'model':<18}{'ctx':>6} {'budget':<9}{'status':<7}{'w est':>7}{'w llama':>8}{'kv est':>7}{'kv llama':>9}"
          f"{'c est':>7}{'compute':>8}{'held est':>10}{'held':>7}{'RSS':>6}  {'prefill bench/llama tok/s':>26}  "
          f"{'decode bench/llama tok/s':>25}  record")
    for (model, ctx, target, status, w_est, w_ll, kv_est, kv_ll, c_est, compute, total, held, rss, pb, pl, db, dl,
         rid) in rows:
        prefill = f"{pb:.1f}/{pl:.1f} ({pb / pl:.3f})" if pb and pl else "-"
        decode = f"{db:.2f}/{dl:.2f} ({db / dl:.3f})" if db and dl else "-"
        print(f"{model:<18}{ctx:>6} {target:<9}{status:<7}{w_est:>7.2f}{w_ll:>8.2f}{kv_est:>7.2f}{kv_ll:>9.2f}"
              f"{c_est:>7.2f}{compute:>8.2f}{total:>10.2f}{held:>7.2f}{rss:>6.2f}  {prefill:>26}  {decode:>25}  {rid}")
    print("GiB; held = llama.cpp's model + KV + compute + output buffers (held est: bench plan's; c est: its "
          "compute-buffer model); ratios in parentheses are bench / llama.cpp")
    return 0 if all(r[3] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
