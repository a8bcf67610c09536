"""Training memory of a fine-tune recipe: frozen base, trainable state, activations, logits.

Conventions, stated because published tables disagree on them:

* The run is what trl's users run: the model loaded (in 4 bits for QLoRA) and the
  LoRA config handed to the trainer. Frozen tensors stay as loaded: the quantized
  linear layers in their format, everything else (embeddings, norms, lm_head) in 16
  bits. Nothing calls peft's `prepare_model_for_kbit_training`, which would cast
  those to fp32.
* LoRA adapters over a 16-bit base are fp32 (peft's `get_peft_model` casts adapters
  up by default): 4 bytes of weights and 4 of gradients per parameter. Over a 4-bit
  base trl's trainers cast every trainable tensor back to bf16 (QLoRA's recipe):
  2 + 2 bytes. Gradients take the parameter's dtype.
* Optimizer state per trainable parameter: torch's AdamW keeps two moments in the
  parameter's dtype (8 bytes for fp32, 4 for bf16); bitsandbytes' 32-bit AdamW two
  fp32 moments (8) and its 8-bit AdamW two 8-bit ones (2), whatever the parameter.
* Full fine-tuning keeps fp32 master weights and gradients (4 + 4 bytes/param)
  plus the optimizer state: 16 bytes/param with AdamW.
* Activations are 16-bit. With gradient checkpointing only each layer's input is
  kept, and one layer's activations are alive again during its recompute.
* The loss upcasts logits: 16-bit logits, an fp32 copy and its fp32 gradient.
  A reward model has a one-number score head instead, so no vocabulary logits.
* DPO and reward recipes run the chosen and the rejected sequence together.
  DPO with an adapter needs no second model: its reference is the base with the
  adapter switched off, run without gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.estimate.memory import layer_activation_bytes_per_token, weight_bytes, weight_floor_bytes
from bench.estimate.params import ParamCounts
from bench.estimate.quant import BITSANDBYTES_QUANTS, weight_format
from bench.hfconfig import TextConfig
from bench.specs import RecipeSpec

OPTIMIZER_STATE_BYTES = {  # per trainable parameter; None: two moments in the parameter's own dtype
    "adamw_torch": None,  # torch's exp_avg and exp_avg_sq are zeros_like(param)
    "paged_adamw_32bit": 8,  # fp32 moments (bitsandbytes)
    "adamw_8bit": 2,  # 8-bit blockwise states (bitsandbytes)
    "paged_adamw_8bit": 2,
    "sgd": 0,  # no momentum
}
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")


def _module_shapes(cfg: TextConfig, width: int) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear module a LoRA recipe can target."""
    h, hd = cfg.hidden_size, cfg.head_size
    q, kv = cfg.num_attention_heads * hd, cfg.kv_heads * hd
    return {
        "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
        "gate_proj": (h, width), "up_proj": (h, width), "down_proj": (width, h),
    }


def trainable_dtype_bytes(recipe: RecipeSpec) -> int:
    """Bytes of one trainable parameter as the trainer holds it: fp32, except bf16 over a base
    bitsandbytes quantized (trl casts down when the model `is_loaded_in_4bit` or `_8bit`)."""
    return 2 if recipe.quant in BITSANDBYTES_QUANTS else 4


def lora_params(cfg: TextConfig, recipe: RecipeSpec) -> int:
    """Adapter parameters: rank x (in + out) for every targeted module of every layer.

    In an MoE model the recipe's `moe_targets` decides: attention modules only with
    `attention`, the routed experts only with `experts`, the shared expert only with
    `shared_experts`. The router is never adapted.
    """
    rank = recipe.rank or 0
    moe_layers = cfg.moe_layer_indices()
    total = 0
    for i in range(cfg.num_hidden_layers):
        if i in moe_layers:
            shapes = _module_shapes(cfg, cfg.intermediate_size)
            mlp_copies = 0
            if "experts" in recipe.moe_targets:
                mlp_copies += cfg.num_local_experts or 0
            if "shared_experts" in recipe.moe_targets:
                mlp_copies += cfg.shared_experts
        else:
            width = cfg.intermediate_size_mlp if cfg.model_type == "llama4_text" else cfg.intermediate_size
            shapes = _module_shapes(cfg, width or cfg.intermediate_size)
            mlp_copies = 1
        for name in recipe.target_modules:
            if name not in shapes:
                continue
            copies = 1 if name in ATTENTION_MODULES else mlp_copies
            if name in ATTENTION_MODULES and cfg.is_moe and "attention" not in recipe.moe_targets:
                copies = 0
            fan_in, fan_out = shapes[name]
            total += copies * rank * (fan_in + fan_out)
    return total


@dataclass(frozen=True)
class TrainingMemory:
    weights_bytes: int  # the frozen base (0 for full fine-tuning, whose weights are trainable state)
    weights_floor_bytes: int  # the same at this bit width with every linear weight packed
    trainable_params: int
    trainable_dtype_bytes: int  # bytes of one trainable parameter as held (fp32, or bf16 over a 4-bit base)
    trainable_bytes: int  # trainable weights, their gradients and optimizer state
    activations_bytes: int
    logits_bytes: int
    overhead_bytes: int
    budget_bytes: int | None
    tokens_per_step: int

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.trainable_bytes + self.activations_bytes
                + self.logits_bytes + self.overhead_bytes)

    @property
    def lower_bound_bytes(self) -> int:
        """Packed weights and trainable state must be resident whatever the batch or kernels."""
        return self.weights_floor_bytes + self.trainable_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.budget_bytes is None else self.total_bytes <= self.budget_bytes


def training_memory(
    cfg: TextConfig,
    params: ParamCounts,
    recipe: RecipeSpec,
    overhead_bytes: int,
    budget_bytes: int | None,
    sequence_length: int | None = None,
) -> TrainingMemory:
    seq = sequence_length or recipe.sequence_length
    pairs = 2 if recipe.method in ("dpo", "reward") else 1
    tokens = recipe.micro_batch * seq * pairs
    optimizer = OPTIMIZER_STATE_BYTES[recipe.optimizer]

    base = params
    if recipe.method == "reward":
        # The lm_head gives way to a score head of one output (trained in full, held as the adapters are).
        base = ParamCounts(**{**params.__dict__, "lm_head": 0})
    if recipe.method == "full":
        trainable = base.total
        weights = floor = 0  # every weight is trainable state
    else:
        score_head = cfg.hidden_size if recipe.method == "reward" else 0
        trainable = lora_params(cfg, recipe) + score_head
        fmt = weight_format(recipe.quant, recipe.double_quant)
        weights, floor = weight_bytes(base, fmt), weight_floor_bytes(base, fmt)
    held = trainable_dtype_bytes(recipe)
    state = 2 * held if optimizer is None else optimizer
    trainable_bytes = trainable * (held + held + state)  # weights, gradients in their dtype, optimizer state

    per_token_layer = layer_activation_bytes_per_token(cfg)
    if recipe.gradient_checkpointing:
        activations = tokens * (cfg.num_hidden_layers * 2 * cfg.hidden_size + per_token_layer)
    else:
        activations = tokens * cfg.num_hidden_layers * per_token_layer
    logits = 0 if recipe.method == "reward" else tokens * cfg.vocab_size * (2 + 4 + 4)
    return TrainingMemory(
        weights_bytes=weights,
        weights_floor_bytes=floor,
        trainable_params=trainable,
        trainable_dtype_bytes=held,
        trainable_bytes=trainable_bytes,
        activations_bytes=activations,
        logits_bytes=logits,
        overhead_bytes=overhead_bytes,
        budget_bytes=budget_bytes,
        tokens_per_step=tokens,
    )
