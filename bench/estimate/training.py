"""Training memory of a fine-tune recipe, term by term, as the libraries allocate it.

The estimate is the allocator's *active peak* (what torch's `max_memory_allocated` and
torchtune's "peak memory" report) plus, separately, what the card needs beyond it: the
CUDA context and caching slack (`overhead_bytes`, from the hardware profile). A paged
optimizer's state is reported on its own: bitsandbytes keeps it in unified memory outside
torch's allocator, which the driver evicts to host memory when the card is full.
Comparisons are like with like: a published allocator peak against `active_peak_bytes`,
a "fits on the card" question against `total_bytes`.

Each term follows the code that allocates it (transformers 5.19, trl 1.16, peft 0.21,
bitsandbytes); docs/estimator.md cites the lines, and tests/test_training_memory.py holds
the terms to a CPU measurement of the same trainer (bench.calibration.training_probe).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config.hfconfig import TextConfig
from bench.config.specs import RecipeSpec
from bench.estimate.memory import mlp_width_per_token, weight_bytes, weight_floor_bytes
from bench.estimate.params import ParamCounts
from bench.estimate.quant import BITSANDBYTES_QUANTS, weight_format

COMPUTE_BYTES = 2  # bf16 activations and logits, the dtype every recipe trains in
# Optimizer state per trainable parameter in torch's allocator: None is two moments in the
# parameter's own dtype (torch AdamW: `zeros_like(param)`); bitsandbytes' 8-bit Adam two
# uint8 moments plus one fp32 absmax per 256 values. Paged states live outside (PAGED_STATE_BYTES).
OPTIMIZER_STATE_BYTES: dict[str, float | None] = {
    "adamw_torch": None, "adamw_8bit": 2 * (1 + 4 / 256), "paged_adamw_8bit": 0, "paged_adamw_32bit": 0, "sgd": 0}
PAGED_STATE_BYTES = {"paged_adamw_8bit": 2 * (1 + 4 / 256), "paged_adamw_32bit": 8}
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj")
# The tensor each adaptable module reads: q, k and v share the attention's normed input, gate and up the MLP's.
MODULE_INPUTS = {"q_proj": "attention input", "k_proj": "attention input", "v_proj": "attention input",
                 "qkv_proj": "attention input", "o_proj": "attention output", "gate_proj": "MLP input",
                 "up_proj": "MLP input", "gate_up_proj": "MLP input", "down_proj": "gated product"}
# trl's fused LM head projects hidden states through the vocabulary in tiles of at most
# TOKEN_CHUNK_SIZE tokens x chunk_size columns (trl/kernels/chunked_logprob.py, trl/trainer/utils.py).
FUSED_TOKEN_TILE, FUSED_VOCAB_TILE = 4096, 32768
TORCHTUNE_CE_CHUNKS = 8  # torchtune's CEWithChunkedOutputLoss num_output_chunks
CPU_TILE_TEMP_BYTES = 29  # trl's torch fallback of the tile fold (`_backward_tile`): see logits_bytes


def _module_shapes(cfg: TextConfig, width: int) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear module a LoRA recipe can target, under transformers' names: Phi-3
    fuses q/k/v into qkv_proj and gate/up into gate_up_proj; MLA (deepseek) has no k_proj or v_proj, and a
    q_proj only without a q bottleneck (its latent projections are named otherwise)."""
    h, hd = cfg.hidden_size, cfg.head_size
    q, kv = cfg.num_attention_heads * hd, cfg.kv_heads * hd
    if cfg.is_mla:
        shapes = {"o_proj": (cfg.num_attention_heads * cfg.value_head_size, h)}
        if cfg.q_lora_rank is None:
            shapes["q_proj"] = (h, q)
    elif cfg.model_type == "phi3":
        shapes = {"qkv_proj": (h, q + 2 * kv), "o_proj": (q, h)}
    else:
        shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h)}
    if cfg.model_type == "phi3":
        return {**shapes, "gate_up_proj": (h, 2 * width), "down_proj": (width, h)}
    return {**shapes, "gate_proj": (h, width), "up_proj": (h, width), "down_proj": (width, h)}


def _adapted_modules(cfg: TextConfig, recipe: RecipeSpec, layer: int) -> list[tuple[str, int, int, int]]:
    """(name, in, out, copies) of every module the recipe adapts in one layer.

    In an MoE layer `moe_targets` decides: attention modules with `attention`, the shared expert
    with `shared_experts`. Routed experts never: transformers 5 stores them as fused 3-D
    parameters (`experts.gate_up_proj`, `experts.down_proj`), which peft's `target_modules`
    cannot match, so the recipe spec refuses `experts`. The router never either.
    """
    if layer in cfg.moe_layer_indices():
        shapes = _module_shapes(cfg, cfg.shared_expert_width or cfg.expert_width)
        mlp_copies = cfg.shared_experts if "shared_experts" in recipe.moe_targets else 0
    else:
        shapes, mlp_copies = _module_shapes(cfg, cfg.dense_width), 1
    found = []
    for name in recipe.target_modules:
        if name not in shapes:
            continue
        copies = mlp_copies
        if name in ATTENTION_MODULES:
            copies = 0 if cfg.is_moe and "attention" not in recipe.moe_targets else 1
        found.append((name, *shapes[name], copies))
    return found


def lora_params(cfg: TextConfig, recipe: RecipeSpec) -> int:
    """Adapter parameters: rank x (in + out) for every targeted module of every layer."""
    rank = recipe.rank or 0
    return sum(count * copies * rank * (fan_in + fan_out)
               for layer, count in layer_kinds(cfg)
               for _, fan_in, fan_out, copies in _adapted_modules(cfg, recipe, layer))


def layer_kinds(cfg: TextConfig) -> list[tuple[int, int]]:
    """(first layer of a kind, how many layers are of it): decoder layers differ here only in whether their
    MLP is an MoE one, so a sum over layers weighs one layer of each kind by its count. The planner's
    searches ask for these sums at every step; visiting each of a hundred layers every time cost seconds."""
    moe = cfg.moe_layer_indices()
    dense = [i for i in range(cfg.num_hidden_layers) if i not in moe]
    return [(min(group), len(group)) for group in (sorted(moe), dense) if group]


def trainable_dtype_bytes(recipe: RecipeSpec) -> int:
    """Bytes of one trainable parameter as the trainer holds it.

    Adapters: fp32 as peft makes them (`autocast_adapter_dtype`), except over a bitsandbytes
    base, where trl casts every trainable parameter to bf16; a recipe may say otherwise
    (`adapter_dtype`, e.g. torchtune's bf16 adapters). Full fine-tuning: fp32 master
    weights (`mixed`) or the bf16 weights themselves.
    """
    if recipe.method == "full":
        return 4 if recipe.full_precision == "mixed" else 2
    if recipe.adapter_dtype is not None:
        return 4 if recipe.adapter_dtype == "fp32" else 2
    return 2 if recipe.quant in BITSANDBYTES_QUANTS else 4


def _lora_branch_bytes_per_token(cfg: TextConfig, recipe: RecipeSpec, layer: int, device: str) -> float:
    """What peft's LoRA branches save for backward per token (`tuners/lora/layer.py`, `Linear.forward`).

    Each branch runs `lora_B(lora_A(dropout(x)))` on `x` cast to the adapter's dtype, and lora_A keeps
    its input: with dropout, the dropout's output plus its mask (a bool on CUDA's fused kernel; on the
    CPU, torch's unfused dropout keeps a noise tensor in the input's dtype); without dropout, the cast
    copy, or the module's own input when the dtypes agree (then shared by the modules that read it: q, k
    and v one normed input, gate and up another). On CUDA the trainer runs under bf16 autocast
    (`TrainingArguments(bf16=True)`), so lora_A keeps its bf16 cast of that input; on the CPU, without
    autocast, the input in the adapter's dtype. lora_B keeps lora_A's rank-wide output.
    """
    held, rank = trainable_dtype_bytes(recipe), recipe.rank or 0
    kept = COMPUTE_BYTES if device == "cuda" else held
    mask = (held if device == "cpu" else 1) if recipe.dropout > 0 else 0
    copies_each = recipe.dropout > 0 or held != COMPUTE_BYTES
    total, shared = 0.0, {}
    for name, fan_in, _, copies in _adapted_modules(cfg, recipe, layer):
        total += copies * rank * kept
        if copies_each:
            total += copies * fan_in * (kept + mask)
        elif copies:
            shared[MODULE_INPUTS[name]] = fan_in * COMPUTE_BYTES
    return total + sum(shared.values())


def layer_saved_bytes_per_token(cfg: TextConfig, recipe: RecipeSpec, layer: int, device: str = "cuda") -> float:
    """Tensors one decoder layer saves for its backward, per token (transformers' Llama/Mistral/Mixtral code).

    Two RMSNorms upcast their input to fp32 and keep it (4·H each); SDPA keeps q (after RoPE), k, v,
    its output and an fp32 log-sum-exp per head. A linear layer keeps its input only to make its weight's
    gradient, so over a frozen base (LoRA) the projections keep nothing of their own: the MLP keeps gate,
    SiLU(gate) and up for the SiLU and the product, and the LoRA branches keep their inputs
    (`_lora_branch_bytes_per_token`). A full fine-tune also keeps the normed inputs, o_proj's input, the
    gated product and each norm's bf16 output for the norm weight's gradient. An MoE layer's routed experts
    (fused 3-D parameters) keep their gathered inputs and outputs whatever is trained: the normed input,
    gate, SiLU, up and product at the width of the `k` routed plus shared experts.
    """
    b, h, hd = COMPUTE_BYTES, cfg.hidden_size, cfg.head_size
    q, kv = cfg.num_attention_heads * hd, cfg.kv_heads * hd
    width, full = mlp_width_per_token(cfg), recipe.method == "full"
    sdpa = b * (q + 2 * kv + q) + 4 * cfg.num_attention_heads
    norms = 2 * 4 * h + (2 * b * h if full else 0)
    attention = sdpa + (b * (h + q) if full else 0)
    if full or layer in cfg.moe_layer_indices():
        mlp = b * (h + 4 * width)
    else:
        mlp = b * 3 * width
    adapters = 0 if full else _lora_branch_bytes_per_token(cfg, recipe, layer, device)
    return norms + attention + mlp + adapters


def final_norm_bytes_per_token(cfg: TextConfig, recipe: RecipeSpec) -> int:
    """What the model's last RMSNorm, outside every decoder layer (and so never checkpointed), keeps for the
    backward per token: its input upcast to fp32 (4·H) and its bf16 output, which the LM head's loss (or a
    reward model's score head) saves to make the hidden states' gradient (2·H); a full fine-tune also keeps
    the norm's bf16 normed input for its weight's gradient (2·H). The trace at the real size found this pair
    to be all the estimate had left out of the step (docs/measurements.md)."""
    h = cfg.hidden_size
    return 4 * h + COMPUTE_BYTES * h + (COMPUTE_BYTES * h if recipe.method == "full" else 0)


def activation_bytes(cfg: TextConfig, recipe: RecipeSpec, tokens: int, device: str = "cuda") -> tuple[int, int]:
    """(saved, recomputed): activations kept through the backward, and those of the one layer
    being recomputed.

    Without checkpointing every layer keeps what it saved and nothing is recomputed. With it
    (transformers wraps each decoder layer in `torch.utils.checkpoint`) each layer keeps only
    its bf16 input, held on the host with `activation_offload`; one layer at a time runs
    again and saves its tensors, and its backward makes gradients as wide as the MLP
    (`2·I`) beside them. The recompute comes after the loss's backward, so the two never
    peak together. The final norm keeps its tensors either way (`final_norm_bytes_per_token`).
    """
    per_kind = [(layer_saved_bytes_per_token(cfg, recipe, i, device), count) for i, count in layer_kinds(cfg)]
    final = final_norm_bytes_per_token(cfg, recipe)
    if not recipe.gradient_checkpointing:  # whole bytes per layer: the weighted sum is exact
        return int(tokens * (sum(saved * count for saved, count in per_kind) + final)), 0
    widest = max(saved for saved, _ in per_kind)
    inputs = 0 if recipe.activation_offload else cfg.num_hidden_layers * COMPUTE_BYTES * cfg.hidden_size
    return tokens * (inputs + final), int(tokens * (widest + 2 * COMPUTE_BYTES * mlp_width_per_token(cfg)))


def hf_loss_bytes_per_token(loss: str, sequences: int) -> tuple[int, int]:
    """(forward, backward) peak of the plain Hugging Face loss, in bytes per token per vocabulary entry.

    Forward, `hf` (transformers 5.19, `ForCausalLMLoss`): the model's output keeps the bf16 logits (2)
    while the loss makes its fp32 copy (4) and cross-entropy's log-softmax, saved for backward (4).
    `hf_legacy` (`LlamaForCausalLM.forward` before 4.46): the fp32 copy replaces the bf16 logits (4),
    the loss shifts it with `.contiguous()`, a copy (4) only when there is more than one sequence (one
    sequence's first T-1 rows are already contiguous), and the log-softmax (4). Backward, both: the
    trainer has dropped the model's output, and nll_loss's gradient (4) and log-softmax's (4) sit beside
    the saved log-softmax (4); the autograd engine frees each gradient once its consumer has run, so the
    shift's and the upcast's gradients never join them. Held to `bench.calibration.loss_probe`'s measurement.
    """
    backward = 4 + 4 + 4
    if loss == "hf":
        return 2 + 4 + 4, backward
    return 4 + (4 if sequences > 1 else 0) + 4, backward


def logits_bytes(cfg: TextConfig, recipe: RecipeSpec, tokens: int, sequences: int, device: str = "cuda") -> int:
    """The loss's buffers at their peak, by implementation.

    * hf and hf_legacy (the plain Hugging Face loss, today's and before transformers 4.46): the larger
      of the forward's and the backward's peak, `hf_loss_bytes_per_token`; the backward's, 12·V, in both.
    * chunked (torchtune): bf16 logits kept (2·V), each of 8 chunks upcast and log-softmaxed in turn.
    * fused_linear (trl 1.16's fused LM head, Liger): logits are never whole. trl keeps one bf16
      tile buffer of min(tokens, 4096) x 32768 columns (whatever the vocabulary), the fp32
      gradient of the hidden states (4·H per token) and, for a full fine-tune, the lm_head's
      gradient accumulated in fp32. Without Triton (the CPU) trl folds each tile with torch
      ops: y, z, log p, p, the gradient and the target mask in fp32 are alive together at the
      fold's peak, 29 bytes per tile element (seven fp32 copies and a bool mask), unless the
      gradient GEMM after it (`_addmm_fp32`: the tile and the weight chunk upcast to fp32) is larger.
    A reward model scores the last token with a one-output head: nothing vocabulary-wide.
    """
    if recipe.method == "reward":
        return 0
    v, h = cfg.vocab_size, cfg.hidden_size
    if recipe.loss in ("hf", "hf_legacy"):
        return tokens * v * max(hf_loss_bytes_per_token(recipe.loss, sequences))
    if recipe.loss == "chunked":
        return tokens * v * 2 + tokens * v * (4 + 4) // TORCHTUNE_CE_CHUNKS
    scored = min(tokens - sequences, FUSED_TOKEN_TILE)
    buffers = scored * FUSED_VOCAB_TILE * COMPUTE_BYTES + tokens * 4 * h
    if recipe.method == "full":
        buffers += v * h * 4
    if device != "cuda":  # the fold's temporaries, or its fp32 gradient GEMM with the weight chunk upcast
        tile = scored * min(v, FUSED_VOCAB_TILE)
        buffers += int(max(tile * CPU_TILE_TEMP_BYTES, 4 * tile + 4 * min(v, FUSED_VOCAB_TILE) * h))
    return buffers


@dataclass(frozen=True)
class TrainingMemory:
    weights_bytes: int  # frozen base; for full fine-tuning the trained weights
    weights_floor_bytes: int  # the same at this bit width with every linear weight packed
    trainable_params: int
    trainable_dtype_bytes: int  # bytes of one trainable parameter as held
    trainable_bytes: int  # adapters (none for full), gradients and optimizer state in the allocator
    gradient_bytes: int  # of which gradients; a full fine-tune's replace activations as the backward frees them
    activations_bytes: int  # saved through the backward, plus the recomputed layer with checkpointing
    recompute_bytes: int  # of which the one layer recomputed at a time
    logits_bytes: int
    optimizer_step_bytes: int  # temporaries of the optimizer step, when they outgrow the backward's
    outside_allocator_bytes: int  # a paged optimizer's state: unified memory, evicted to the host under pressure
    overhead_bytes: int  # CUDA context and caching slack: on the card, not in the allocator
    budget_bytes: int | None
    tokens_per_step: int
    micro_batch: int
    full: bool  # every weight trained (no adapter)
    gradient_accumulation: int  # micro batches per optimizer step

    @property
    def active_peak_bytes(self) -> int:
        """The allocator's peak: everything resident plus the largest of the loss's, the recompute's and the
        step's transients.

        The loss's backward runs first, before any gradient of this micro batch exists (the trainer frees them
        after each step), so gradients count there only when micro batches accumulate into them. Adapter
        gradients are whole by the recompute of the first layers; a full fine-tune's grow as the backward
        frees activations, so only the step sees them all.
        """
        saved = self.activations_bytes - self.recompute_bytes
        accumulated = self.gradient_bytes if self.gradient_accumulation > 1 else 0
        resident = self.weights_bytes + self.trainable_bytes - self.gradient_bytes
        loss = saved + self.logits_bytes + accumulated
        recompute = saved + self.recompute_bytes + (accumulated if self.full else self.gradient_bytes)
        step = self.gradient_bytes + self.optimizer_step_bytes
        return resident + max(loss, recompute, step)

    @property
    def beyond_allocator_bytes(self) -> int:
        """What the card needs beyond the allocator's peak: the CUDA context and caching slack. A paged
        optimizer's state is not in it: under pressure the driver evicts those pages to host memory."""
        return self.overhead_bytes

    @property
    def total_bytes(self) -> int:
        return self.active_peak_bytes + self.beyond_allocator_bytes

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
    micro_batch: int | None = None,
    device: str = "cuda",
) -> TrainingMemory:
    """The recipe's memory at its sequence length and micro batch (or the ones given).

    `device` "cpu" models trl's torch fallback for the fused LM head, for the CPU measurement.
    """
    seq = sequence_length or recipe.sequence_length
    batch = micro_batch or recipe.micro_batch
    sequences = batch * (2 if recipe.method in ("dpo", "reward") else 1)  # chosen and rejected run together
    tokens = sequences * seq
    held = trainable_dtype_bytes(recipe)
    moments = OPTIMIZER_STATE_BYTES[recipe.optimizer]
    paged = PAGED_STATE_BYTES.get(recipe.optimizer, 0)
    if device != "cuda" and paged:  # bitsandbytes pages on CUDA only; elsewhere it keeps the state as tensors
        moments, paged = paged, 0
    state = 2 * held if moments is None else moments

    base = params
    if recipe.method == "reward":  # the lm_head gives way to a one-output score head, trained in full
        base = ParamCounts(**{**params.__dict__, "lm_head": 0})
    step_bytes = 0
    if recipe.method == "full":
        trainable = base.total
        weights = floor = trainable * held
        # Gradients in the parameters' dtype; stepped in backward, only the largest is ever whole.
        largest = max(cfg.vocab_size * cfg.hidden_size, base.total // max(cfg.num_hidden_layers, 1) // 4)
        grads = largest * held if recipe.optimizer_in_backward else trainable * held
        resident = trainable * state
        if recipe.optimizer == "adamw_torch" and not recipe.optimizer_in_backward:
            # torch's AdamW makes its denominator as a temporary: for every parameter at once with the
            # foreach implementation (CUDA's default), one parameter at a time on the CPU.
            step_bytes = (trainable if device == "cuda" else largest) * held
        trainable_bytes, gradients = int(grads + resident), int(grads)
    else:
        score_head = cfg.hidden_size if recipe.method == "reward" else 0
        trainable = lora_params(cfg, recipe) + score_head
        fmt = weight_format(recipe.quant, recipe.double_quant)
        weights, floor = weight_bytes(base, fmt), weight_floor_bytes(base, fmt)
        if recipe.method == "dpo" and recipe.dpo_reference == "copy":
            weights, floor = 2 * weights, 2 * floor
        trainable_bytes, gradients = int(trainable * (held + held + state)), trainable * held
    outside = int(trainable * paged)
    saved, recompute = activation_bytes(cfg, recipe, tokens, device)

    return TrainingMemory(
        weights_bytes=weights,
        weights_floor_bytes=floor,
        trainable_params=trainable,
        trainable_dtype_bytes=held,
        trainable_bytes=trainable_bytes,
        gradient_bytes=gradients,
        activations_bytes=saved + recompute,
        recompute_bytes=recompute,
        logits_bytes=logits_bytes(cfg, recipe, tokens, sequences, device),
        optimizer_step_bytes=step_bytes,
        outside_allocator_bytes=outside,
        overhead_bytes=overhead_bytes,
        budget_bytes=budget_bytes,
        tokens_per_step=tokens,
        micro_batch=batch,
        full=recipe.method == "full",
        gradient_accumulation=recipe.gradient_accumulation,
    )
