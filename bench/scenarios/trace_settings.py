"""What a fake-tensor trace runs, refuses and cannot see, without torch.

The parent (`bench trace`) refuses a recipe before any model is built and writes what the
trace cannot see into the record; the child (`bench.scenarios.trace`) traces with the same
words.
"""

from __future__ import annotations

TRACED_METHODS = ("lora", "qlora", "full")  # SFT through trl's SFTTrainer; DPO and reward are not traced yet
# What a tensor trace cannot see, each of which a card's memory holds beside the tensors.
UNSEEN = ("the caching allocator's rounding of each block and the reserve it keeps cached",
          "the CUDA context and the loaded kernels' modules",
          "cuBLAS and cuDNN workspaces",
          "buffers a kernel allocates for itself (an attention or loss kernel's scratch)")


def unsupported_trace(method: str, quant: str, moe: bool = False) -> str | None:
    """Why a recipe (on an MoE model, with `moe`) cannot be traced, as the one line a user sees; None if it can.

    An MoE layer routes tokens by value: how many reach each expert is read from the router's output, which
    a fake tensor does not have, so a stand-in would set the experts' shapes; such models are refused."""
    if method not in TRACED_METHODS:
        return f"bench trace runs SFT (lora, qlora, full); {method} is not traced yet"
    if moe:
        return ("an MoE model routes tokens by value (the tokens per expert are read from the router's output), "
                "which a trace on fake tensors cannot know; bench traces dense models")
    return None
