"""The emulation cap, checked on a CUDA card: for each target, allocate until out of memory under its cap.

    python scripts/gpu_cap_check.py --gpu rtx-4090 --gpu edge-4gb --out results/gpu/checks

Each check runs in its own process (bench.calibration.cap_check) and appends a JSON line to cap-checks.jsonl (JSON
Lines, so that record readers, which take *.json, pass it by); the table compares what
the card itself reports the capped process holding at the refusal (NVML's per-process figure: allocator,
context and loaded kernels) with the target's CUDA memory, and names what was judged. Exit 1 when one is
off by more than 2%, or when NVML had no figure (the check would only read back the cap bench set).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench.config.registry import load_registry
from bench.launch.environment import parent_view_of_hardware, software_versions
from bench.launch.isolate import run_isolated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="append", required=True, help="target card id or alias (repeat)")
    parser.add_argument("--out", type=Path, default=Path("results/gpu/checks"))
    args = parser.parse_args()
    registry = load_registry()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    print(f"{'target':<12} {'target CUDA GiB':>15} {'context MiB':>11} {'offered GiB':>11} {'error':>7}  within 2%"
          "  judged by")
    for name in args.gpu:
        target = registry.gpu(name)
        outcome = run_isolated("bench.calibration.cap_check:allocate_until_oom",
                               {"target_cuda_bytes": target.cuda_memory_bytes}, 600)
        result = {"check": "emulation-cap", "target": target.id, "status": outcome.status, "error": outcome.error,
                  "at": datetime.now(timezone.utc).isoformat(), "result": outcome.value,
                  "hardware": parent_view_of_hardware("cuda"), "software": software_versions()}
        with open(args.out / "cap-checks.jsonl", "a") as log:
            log.write(json.dumps(result) + "\n")
        if outcome.status != "ok":
            print(f"{target.id:<12} {outcome.status}: {(outcome.error or '').strip().splitlines()[-1:]}")
            failed = True
            continue
        v = outcome.value
        failed |= not v["within_tolerance"] or not v["judged_by"].startswith("nvml")
        print(f"{target.id:<12} {v['target_cuda_bytes'] / 2**30:>15.2f} {v['context_bytes'] / 2**20:>11.0f} "
              f"{v['offered_bytes'] / 2**30:>11.2f} {v['relative_error']:>+7.2%}  {v['within_tolerance']!s:<9}  "
              f"{v['judged_by']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
