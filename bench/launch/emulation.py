"""Emulating a smaller card on a larger one, inside the measuring process.

The parent decides whether a run emulates its target (`bench.jobs.preflight.plan_cap`) and
passes the target's CUDA memory. Here, in the child, the cap is made concrete: the
target's CUDA memory less the CUDA context this process holds outside any allocator
(measured here, after the context exists, as the real card would also hold one), as a
fraction of this card's CUDA memory. vLLM takes that fraction as
`gpu_memory_utilization` (its budget leaves the context out too), torch as its
per-process memory fraction. The record keeps every term of the arithmetic.
"""

from __future__ import annotations

import os
from typing import Any


def memory_cap(device: str, target_cuda_bytes: int | None) -> tuple[float | None, dict[str, Any]]:
    """Return (fraction of this card to allow, what to record about it); (None, ...) when not emulating."""
    if device != "cuda" or target_cuda_bytes is None:
        return None, {"emulated": False}
    import torch

    from bench.launch.emulation import allocator_cap

    index = torch.cuda.current_device()
    context, source = context_bytes(index)
    total = torch.cuda.get_device_properties(index).total_memory
    cap = allocator_cap(target_cuda_bytes, context)
    return cap / total, {"emulated": True, "memory_fraction": cap / total, "cap_bytes": cap,
                         "target_cuda_bytes": target_cuda_bytes, "context_bytes": context,
                         "context_source": source, "device_total_bytes": total}


def allocator_cap(target_cuda_bytes: int, context_bytes: int) -> int:
    """The allocator cap on each card: the target's CUDA memory less the context held outside the allocator,
    which the real card would hold beside the same budget."""
    return target_cuda_bytes - context_bytes


def context_bytes(index: int) -> tuple[int, str]:
    """Card memory this process holds outside torch's allocator: the CUDA context and cuBLAS's handle.

    NVML's figure for this process where it has one; else the card's used memory (which also
    counts other processes on the card, so the cap errs small, never large).
    """
    import torch

    torch.cuda.init()
    torch.cuda.current_blas_handle()
    reserved = torch.cuda.memory_reserved(index)
    own = _nvml_process_bytes(index)
    if own:
        return own - reserved, "nvml-process"
    free, total = torch.cuda.mem_get_info(index)
    return total - free - reserved, "device-used"


def _nvml_process_bytes(index: int) -> int:
    """This process's memory on card `index` by NVML; 0 where NVML is missing or lists host PIDs."""
    try:
        from bench.launch.gpu_inventory import NvmlCard

        nvml = NvmlCard(index)
    except Exception:  # no nvidia-ml-py or no NVML library: the caller falls back to the device's used memory
        return 0
    try:
        return nvml.process_used({os.getpid()})
    finally:
        nvml.close()
