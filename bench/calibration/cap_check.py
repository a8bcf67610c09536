"""Does an emulation cap hold a card to the target's memory? Allocate until out of memory and see.

Run isolated on a CUDA card (`scripts/gpu_cap_check.py`): the child applies the same cap a
capped run gets (`bench.launch.emulation.memory_cap`), then allocates in 64 MiB and then 2 MiB
pieces until torch refuses. What it held at that point, plus the context it holds outside
the allocator, is what the emulated card offered; it must come within 2% of the target's
CUDA memory.
"""

from __future__ import annotations

from typing import Any

TOLERANCE = 0.02
COARSE, FINE = 64 * 2**20, 2 * 2**20


def allocate_until_oom(target_cuda_bytes: int) -> dict[str, Any]:
    """Child entry point: the cap's arithmetic and the memory torch gave before refusing."""
    import torch

    from bench.launch.emulation import memory_cap

    fraction, emulation = memory_cap("cuda", target_cuda_bytes)
    if fraction is None:
        raise RuntimeError("no cap applies (not a CUDA device)")
    index = torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(fraction, index)
    held = []
    for piece in (COARSE, FINE):
        while True:
            try:
                held.append(torch.empty(piece, dtype=torch.uint8, device=f"cuda:{index}"))
            except torch.OutOfMemoryError:
                break
    reserved = torch.cuda.memory_reserved(index)
    return {**emulation, "reserved_at_oom_bytes": reserved, "pieces": len(held),
            **judge(reserved + emulation["context_bytes"], target_cuda_bytes)}


def judge(offered_bytes: int, target_cuda_bytes: int) -> dict[str, Any]:
    """How far what the capped card offered is from the target's CUDA memory, and whether that is within 2%."""
    error = offered_bytes / target_cuda_bytes - 1
    return {"offered_bytes": offered_bytes, "relative_error": error, "within_tolerance": abs(error) <= TOLERANCE}
