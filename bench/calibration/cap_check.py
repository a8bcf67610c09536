"""Does an emulation cap hold a card to the target's memory? Allocate until out of memory and see.

Run isolated on a CUDA card (`scripts/gpu_cap_check.py`): the child applies the same cap a
capped run gets (`bench.launch.emulation.memory_cap`), then allocates in 64 MiB and then 2 MiB
pieces until torch refuses. What the card itself reports this process holding at that point
(NVML's per-process figure: allocator, context, loaded kernels, everything) is what the emulated
card offered; it must come within 2% of the target's CUDA memory. Reading back the allocator's
reserve plus the context measured before would only restate the cap bench set, so that is the
fallback where NVML has no figure, and the result names which was judged (`judged_by`).
"""

from __future__ import annotations

from typing import Any

TOLERANCE = 0.02
COARSE, FINE = 64 * 2**20, 2 * 2**20


def allocate_until_oom(target_cuda_bytes: int) -> dict[str, Any]:
    """Child entry point: the cap's arithmetic and the memory torch gave before refusing."""
    import os

    import torch

    from bench.launch.emulation import memory_cap

    index = torch.cuda.current_device()
    card = _nvml_card(index)
    device_before = card.device_used() if card else None  # before this process's context and kernels
    try:
        fraction, emulation = memory_cap("cuda", target_cuda_bytes)
        if fraction is None:
            raise RuntimeError("no cap applies (not a CUDA device)")
        torch.cuda.set_per_process_memory_fraction(fraction, index)
        held = []
        for piece in (COARSE, FINE):
            while True:
                try:
                    held.append(torch.empty(piece, dtype=torch.uint8, device=f"cuda:{index}"))
                except torch.OutOfMemoryError:
                    break
        reserved = torch.cuda.memory_reserved(index)
        own = card.process_used({os.getpid()}) if card else 0
        device_now = card.device_used() if card else None
    finally:
        if card:
            card.close()
    if own:
        offered, judged_by = own, "nvml-process"
    elif device_before is not None and device_now is not None:
        offered, judged_by = device_now - device_before, "nvml-device-delta"
    else:
        offered, judged_by = reserved + emulation["context_bytes"], "allocator-readback (no NVML figure)"
    return {**emulation, "reserved_at_oom_bytes": reserved, "pieces": len(held), "nvml_process_bytes": own,
            "judged_by": judged_by, **judge(offered, target_cuda_bytes)}


def _nvml_card(index: int):
    """NVML's view of the card, or None without nvidia-ml-py or a driver library."""
    try:
        from bench.launch.gpu_inventory import NvmlCard

        return NvmlCard(index)
    except Exception:  # no nvidia-ml-py / libnvidia-ml: the check falls back to the allocator's figures
        return None


def judge(offered_bytes: int, target_cuda_bytes: int) -> dict[str, Any]:
    """How far what the capped card offered is from the target's CUDA memory, and whether that is within 2%."""
    error = offered_bytes / target_cuda_bytes - 1
    return {"offered_bytes": offered_bytes, "relative_error": error, "within_tolerance": abs(error) <= TOLERANCE}
