"""What a fake-tensor trace runs, refuses and cannot see, without torch.

The parent (`bench trace`) refuses a recipe before any model is built and writes what the
trace cannot see into the record; the child (`bench.scenarios.trace`) traces with the same
words.
"""

from __future__ import annotations

# SFT through trl's SFTTrainer, DPO through its DPOTrainer, a reward model through its RewardTrainer
TRACED_METHODS = ("lora", "qlora", "full", "dpo", "reward")
# What a tensor trace cannot see, each of which a card's memory holds beside the tensors.
UNSEEN = ("the caching allocator's rounding of each block and the reserve it keeps cached",
          "the CUDA context and the loaded kernels' modules",
          "cuBLAS and cuDNN workspaces",
          "buffers a kernel allocates for itself (an attention or loss kernel's scratch)")


# MoE layers whose transformers implementation runs every expert on every token and weights each output by its
# router score (Llama 4's `Llama4TextMoe`: the input repeated once per expert, one batched matmul, transformers
# 5.19): no shape depends on the router's values, so a trace runs them as a run does.
EVERY_EXPERT_MODEL_TYPES = ("llama4_text", "llama4")


def routes_by_value(model_type: str, moe: bool) -> bool:
    """Whether an MoE model's experts see only the tokens its router picks, a count read from values."""
    return moe and model_type not in EVERY_EXPERT_MODEL_TYPES


def unsupported_trace(method: str, quant: str, moe: bool = False, dpo_reference: str = "adapter_off",
                      device: str = "cpu") -> str | None:
    """Why a recipe (on a model that routes by value, with `moe`: `routes_by_value`) cannot be traced, as the one
    line a user sees; None if it can.

    Such an MoE layer routes tokens by value: how many reach each expert is read from the router's output, which
    a fake tensor does not have, so a stand-in would set the experts' shapes; such models are refused.
    DPO is traced with the reference `bench finetune` computes inside the step (the adapters switched off).
    On a CUDA device trl's fused LM head scores only the tokens whose label is kept (Triton's compact path,
    `hidden_states[labels != -100]`); DPO's prompt tokens are dropped there, a count the labels' values set."""
    if method not in TRACED_METHODS:
        return f"bench trace runs SFT (lora, qlora, full), dpo and reward; {method} is not traced"
    if moe:
        return ("an MoE model routes tokens by value (the tokens per expert are read from the router's output), "
                "which a trace on fake tensors cannot know; bench traces dense models and Llama 4, whose experts "
                "see every token")
    if method == "dpo" and dpo_reference == "copy":
        return ("dpo_reference copy: bench finetune trains DPO against the base with the adapter off "
                "(adapter_off), and the trace runs what it runs")
    if method == "dpo" and dpo_reference == "precomputed":
        return ("dpo_reference precomputed: trl computes the reference log-probs over the dataset as the trainer is "
                "built, outside the traced step; trace dpo_reference adapter_off")
    if method == "dpo" and device == "cuda":
        return ("dpo on --device cuda: trl's fused LM head scores only the completion tokens there (a boolean "
                "mask of the labels, whose count a fake tensor cannot know); trace with --device cpu")
    return None
