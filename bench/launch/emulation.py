"""Emulating a smaller card on a larger one, inside the measuring process.

The parent decides whether a run emulates its target (`bench.jobs.preflight.plan_cap`) and
passes the target's CUDA memory. Here, in the child, the cap is made concrete, by the rule the
engine itself would apply on the target card:

- torch's allocator (transformers, fine-tuning): the target's CUDA memory less the CUDA context
  this process holds outside any allocator (measured here after a warm-up that loads the kernels
  a run needs first, as the real card would also hold them), as a fraction of this card's memory.
- vLLM: the budget vLLM would give itself on the target, `ceil(total x gpu_memory_utilization)`
  with vLLM's default utilization (vllm 0.32: `LLM(gpu_memory_utilization=0.92)` in
  entrypoints/llm.py; `request_memory` in v1/worker/utils.py), as a fraction of this card's
  memory. vLLM takes that budget after its worker's context exists and keeps the context outside
  it (gpu_worker.py: the init snapshot), on the target as here, so no context is subtracted.

The record keeps every term of the arithmetic and names the rule (`engine_budget`).
"""

from __future__ import annotations

import math
import os
from typing import Any

# vLLM's own default `gpu_memory_utilization` (vllm 0.32.0, entrypoints/llm.py `LLM.__init__`), what a user
# running vLLM on the target card gets; tests/test_emulation_budget.py reads it back from vLLM itself.
VLLM_DEFAULT_UTILIZATION = 0.92


def memory_cap(device: str, target_cuda_bytes: int | None,
               engine: str = "torch") -> tuple[float | None, dict[str, Any]]:
    """Return (fraction of this card to allow, what to record about it); (None, ...) when not emulating.

    `engine` "vllm" budgets by vLLM's rule, anything else by torch's allocator (see the module's docstring).
    """
    if device != "cuda" or target_cuda_bytes is None:
        return None, {"emulated": False}
    import torch

    index = torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    if engine == "vllm":
        fraction, budget = vllm_utilization(target_cuda_bytes, total)
        return fraction, {"emulated": True, "engine_budget": "vllm gpu_memory_utilization",
                          "memory_fraction": fraction, "gpu_memory_utilization": fraction,
                          "target_gpu_memory_utilization": VLLM_DEFAULT_UTILIZATION, "budget_bytes": budget,
                          "target_cuda_bytes": target_cuda_bytes, "device_total_bytes": total}
    context, source = context_bytes(index)
    cap = allocator_cap(target_cuda_bytes, context)
    return cap / total, {"emulated": True, "engine_budget": "torch allocator fraction",
                         "memory_fraction": cap / total, "cap_bytes": cap,
                         "target_cuda_bytes": target_cuda_bytes, "context_bytes": context,
                         "context_source": source, "context_after": "warm-up kernels loaded",
                         "device_total_bytes": total}


def allocator_cap(target_cuda_bytes: int, context_bytes: int) -> int:
    """The allocator cap on each card: the target's CUDA memory less the context held outside the allocator,
    which the real card would hold beside the same budget."""
    return target_cuda_bytes - context_bytes


def vllm_budget(target_cuda_bytes: int, utilization: float = VLLM_DEFAULT_UTILIZATION) -> int:
    """What vLLM budgets for weights, activations and KV cache on the target card: ceil(total x utilization)."""
    return math.ceil(target_cuda_bytes * utilization)


def vllm_utilization(target_cuda_bytes: int, device_total_bytes: int,
                     utilization: float = VLLM_DEFAULT_UTILIZATION) -> tuple[float, int]:
    """(gpu_memory_utilization on this card, budget in bytes): the fraction of this card that makes vLLM's own
    `ceil(total x utilization)` come out at the target's budget (within a byte of float rounding)."""
    budget = vllm_budget(target_cuda_bytes, utilization)
    return budget / device_total_bytes, budget


def warm_up(index: int) -> None:
    """Load the kernels every run needs first, so the context measured next includes them.

    CUDA loads a library's kernels lazily (CUDA_MODULE_LOADING=LAZY, torch's default), adding card
    memory outside the allocator when a kernel first runs; a context measured before any kernel ran
    is smaller than the one the run ends with. A bf16 and an fp32 matmul (cuBLAS and its workspace),
    a softmax and an elementwise op cover the common first kernels; what loads later is recorded by
    the memory tracker as the growth outside the allocator, not held under the cap.
    """
    import torch

    device = torch.device("cuda", index)
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.ones(64, 64, dtype=dtype, device=device)
        torch.softmax(a @ a, dim=-1).mul_(0.5).sum().item()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()


def context_bytes(index: int) -> tuple[int, str]:
    """Card memory this process holds outside torch's allocator: the CUDA context, loaded kernels, cuBLAS.

    NVML's figure for this process where it has one; else the card's used memory (which also
    counts other processes on the card, so the cap errs small, never large).
    """
    import torch

    torch.cuda.init()
    warm_up(index)
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
