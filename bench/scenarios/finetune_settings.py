"""What a fine-tune smoke test is asked to do, and which recipes it refuses, without torch.

The parent (`bench finetune`, a sweep) checks a recipe and builds the settings before any
model loads, and must not import torch to do so; the child (`bench.scenarios.finetune`)
trains with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# bench's optimizer names -> transformers' `optim` values.
OPTIMIZERS = {"adamw_torch": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "paged_adamw_32bit": "paged_adamw_32bit", "sgd": "sgd"}
TRAINABLE_BASES = ("bf16", "nf4")  # what `load_base` loads: a 16-bit base, or bitsandbytes NF4 for QLoRA


def unsupported_setting(recipe: dict[str, Any]) -> str | None:
    """The first recipe setting the trainer bench builds cannot run, as the one line a user sees; None if all run.

    The estimate models more than trl 1.16 and transformers' Trainer offer: other losses (trl's SFT and DPO
    always train through the fused LM head), an optimizer step fused into the backward and activation offload
    (torchtune's), and a second frozen DPO reference. Those recipes are for `bench plan`; bench finetune refuses
    them before any model loads rather than train something else under their name.
    """
    method = recipe["method"]
    if recipe["quant"] not in TRAINABLE_BASES:
        return f"bench finetune loads a bf16 or nf4 base, not {recipe['quant']}"
    if method != "reward" and recipe["loss"] != "fused_linear":
        return (f"loss {recipe['loss']}: trl's trainers compute the loss through the fused LM head (fused_linear); "
                "the other losses are for `bench plan`")
    if recipe["optimizer_in_backward"]:
        return "optimizer_in_backward: the Hugging Face trainer steps after the backward; it is for `bench plan`"
    if recipe["activation_offload"]:
        return ("activation_offload: the Hugging Face trainer keeps checkpointed inputs on the device; "
                "it is for `bench plan`")
    if recipe["dpo_reference"] == "copy":
        return "dpo_reference copy: trl's DPO with an adapter uses the base with the adapter off (adapter_off)"
    if recipe["packing"] and method in ("dpo", "reward"):
        return f"packing applies to SFT; trl's {method} trainer pairs whole sequences"
    return None


@dataclass(frozen=True)
class FinetuneSettings:
    model_path: str
    recipe: dict[str, Any]  # RecipeSpec fields
    device: str
    steps: int
    dataset: str
    adapter_dir: str
    seed: int = 0
    target_budget_bytes: int | None = None
    synthetic_weights: bool = False  # random base weights from the config (no checkpoint)
    cpu_dtype: str = "float32"  # a CPU run's 16-bit layers; "bfloat16" measures what a GPU run holds
