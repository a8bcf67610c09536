"""The GPU battery's plan, and the checks a machine must pass before the battery runs on it.

    python scripts/gpu_battery_plan.py            # print the plan and the machine checks (any machine)
    python scripts/gpu_battery_plan.py --check    # the same; exit 2 when the machine cannot run the battery

Every cell of configs/sweeps/gpu-battery.yaml with its target, its cap, the engine's budget (vLLM's
gpu_memory_utilization, or torch's allocator fraction), the oldest NVIDIA driver its CUDA runtime runs
on, and the status it is expected to end with; then the machine: NVIDIA driver, MIG, CUDA_VISIBLE_DEVICES.
Nothing here creates a CUDA context (NVML only).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.config.registry import load_registry  # noqa: E402
from bench.config.specs import HardwareSpec  # noqa: E402
from bench.jobs.sweep import Cell, expand, load_sweep  # noqa: E402
from bench.launch.emulation import VLLM_DEFAULT_UTILIZATION, vllm_budget  # noqa: E402
from bench.launch.environment import CUDA_DRIVER_FLOOR, driver_floor, driver_older_than  # noqa: E402

BATTERY = ROOT / "configs/sweeps/gpu-battery.yaml"
GIB = 2**30


def cell_plan(cell: Cell, target: HardwareSpec | None, card_total: int | None) -> dict[str, str]:
    """What one cell runs against: target, cap, engine budget, driver floor, expected status."""
    backend = cell.backend or ("trl" if cell.kind == "finetune" else "vllm")
    floor = driver_floor("vllm" if backend == "vllm" else "transformers")
    row = {"cell": cell.label(), "target": target.id if target else "-", "expect": cell.expect or "decides a claim",
           "driver floor": floor or "by the GPU machine's torch build"}
    if target is None:
        return {**row, "cap": "none (the card at hand)", "engine budget": "the whole card"}
    cuda = target.cuda_memory_bytes
    if backend == "vllm":
        budget = vllm_budget(cuda)
        share = f" = {budget / card_total:.4f} of this card" if card_total else " / this card's CUDA total"
        return {**row, "cap": f"{cuda / GIB:.2f} GiB CUDA",
                "engine budget": f"gpu_memory_utilization ceil({cuda / GIB:.2f} GiB x {VLLM_DEFAULT_UTILIZATION})"
                                 f" = {budget / GIB:.2f} GiB{share}"}
    share = f" / {card_total / GIB:.2f} GiB" if card_total else " / this card's CUDA total"
    return {**row, "cap": f"{cuda / GIB:.2f} GiB CUDA",
            "engine budget": f"allocator fraction ({cuda / GIB:.2f} GiB - measured context){share}"}


def machine_checks(lib: Any, cuda_visible_devices: str | None, floors: set[str]) -> list[tuple[str, bool, str]]:
    """(check, passed, what was found) for the machine NVML (`lib`, None without it) describes."""
    from bench.launch.gpu_inventory import mig_instances, visible_handles

    if lib is None:
        return [("NVIDIA driver", False, "no NVML here (no nvidia-ml-py or no driver): not a GPU machine")]
    driver = lib.nvmlSystemGetDriverVersion()
    driver = driver.decode() if isinstance(driver, bytes) else driver
    newest = max(floors, key=lambda f: tuple(int(p) for p in f.split(".")), default=None)
    old = newest is not None and driver_older_than(driver, newest)
    checks = [("NVIDIA driver", not old, f"{driver}" + (f" (needs {newest} or later)" if old else " (new enough)"))]
    migs = [i for i in range(lib.nvmlDeviceGetCount()) if mig_instances(lib, lib.nvmlDeviceGetHandleByIndex(i))]
    checks.append(("MIG", not migs, f"MIG mode on GPU {migs}: the battery wants one whole card" if migs else "off"))
    visible = visible_handles(lib, cuda_visible_devices)
    shown = "unset" if cuda_visible_devices is None else repr(cuda_visible_devices)
    checks.append(("CUDA_VISIBLE_DEVICES", len(visible) >= 1,
                   f"{shown}: {len(visible)} device(s) visible"))
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 2 when the machine cannot run the battery")
    args = parser.parse_args()
    from bench.launch.gpu_inventory import nvml, visible_cards

    registry = load_registry()
    cards = visible_cards()
    card_total = cards[0].total_bytes if cards else None
    cells = expand(load_sweep(BATTERY, registry), registry)
    rows = [cell_plan(c, registry.gpu(c.gpu) if c.gpu else None, card_total) for c in cells]
    print(f"GPU battery plan: {len(rows)} cells (budgets by NVML's card total where a card is visible)")
    for row in rows:
        print(f"- {row['cell']}\n    target {row['target']}; cap {row['cap']}; engine budget {row['engine budget']}; "
              f"driver floor {row['driver floor']}; expect {row['expect']}")
    print("driver floors by CUDA runtime: " + ", ".join(f"CUDA {m}: {f}" for m, f in sorted(CUDA_DRIVER_FLOOR.items())))
    floors = {r["driver floor"] for r in rows if r["driver floor"][0].isdigit()}
    with nvml() as lib:
        checks = machine_checks(lib, os.environ.get("CUDA_VISIBLE_DEVICES"), floors)
    print("machine:")
    for name, passed, found in checks:
        print(f"  [{'ok' if passed else 'NO'}] {name}: {found}")
    ready = all(passed for _, passed, _ in checks)
    print("ready for the GPU run" if ready else "not ready for the GPU run")
    return 2 if args.check and not ready else 0


if __name__ == "__main__":
    sys.exit(main())
