"""Emulating a smaller card on a larger one: the memory fraction that leaves only its budget.

Runs on a card larger than the claim's are capped (vLLM's `gpu_memory_utilization`,
torch's per-process memory fraction) so that "fits" is tested honestly; the record
says `emulated: true` and keeps the real card's name, and its speed is the real card's.
"""

from __future__ import annotations

from typing import Any


def memory_cap(device: str, target_budget_bytes: int | None) -> tuple[float | None, dict[str, Any]]:
    """Return (fraction of each real card to allow, what to record about it).

    `target_budget_bytes` is the memory of one target card; a multi-card target caps
    each of its cards the same way.
    """
    if device != "cuda" or target_budget_bytes is None:
        return None, {"emulated": False}
    import torch

    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    if target_budget_bytes >= total:
        return None, {"emulated": False, "note": "the target card is not smaller than this one: no cap"}
    fraction = target_budget_bytes / total
    return fraction, {"emulated": True, "memory_fraction": fraction, "device_total_bytes": total}
