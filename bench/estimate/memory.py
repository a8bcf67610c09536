"""Inference memory: weights, KV cache, activations, logits and runtime overhead.

Weights and KV cache are exact arithmetic on the architecture; activations,
logits and overhead are modelled, with the assumptions stated here. The exact
part alone is the *lower bound* a claim can be refuted with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.config.hfconfig import TextConfig
from bench.estimate.gguf import gguf_weight_bytes
from bench.estimate.params import ParamCounts
from bench.estimate.quant import WeightFormat, weight_bytes_of

GIB = 2**30
# Tokens one prefill step processes at most. A chunked-prefill engine (vLLM) caps a step by
# its `max_num_batched_tokens`; 8192 is bench's stated assumption, not a measured engine default.
PREFILL_CHUNK_TOKENS = 8192
KV_DTYPE_BYTES = {"auto": 2, "bf16": 2, "fp16": 2, "fp8": 1}


def weight_bytes(params: ParamCounts, fmt: WeightFormat) -> int:
    """Packed linear layers at the format's bits, everything else at 16 bits."""
    linear = params.attention + params.dense_mlp
    return int(weight_bytes_of(fmt, linear, params.experts, params.high_precision))


def weight_floor_bytes(params: ParamCounts, fmt: WeightFormat) -> int:
    """The weights at this bit width if every linear weight were packed, fused MoE experts included:
    what any implementation of the format needs at least, whatever today's libraries do."""
    return weight_bytes(params, replace(fmt, packs_fused_experts=True))


def kv_bytes_per_token(cfg: TextConfig, kv_dtype_bytes: int = 2) -> int:
    """What one token costs in every layer's cache: 2 (K and V) x KV heads x head dim x bytes, summed."""
    return 2 * cfg.num_hidden_layers * cfg.kv_heads * cfg.head_size * kv_dtype_bytes


def kv_cache_bytes(cfg: TextConfig, tokens: int, batch: int = 1, kv_dtype_bytes: int = 2) -> int:
    """KV cache for `batch` sequences of `tokens`, with sliding/chunked layers capped at their window."""
    per_layer_token = 2 * cfg.kv_heads * cfg.head_size * kv_dtype_bytes
    held = 0
    for layer_type in cfg.attention_layer_types():
        window = cfg.kv_window(layer_type)
        held += tokens if window is None else min(tokens, window)
    return per_layer_token * held * batch


def mlp_width_per_token(cfg: TextConfig) -> int:
    """Widest MLP activation one token produces in a layer (routed experts plus shared ones)."""
    widths = [cfg.intermediate_size_mlp or cfg.intermediate_size] if not cfg.is_moe else []
    if cfg.is_moe:
        widths.append(cfg.intermediate_size * ((cfg.num_experts_per_tok or 1) + cfg.shared_experts))
        if cfg.model_type == "llama4_text" and len(cfg.moe_layer_indices()) < cfg.num_hidden_layers:
            widths.append(cfg.intermediate_size_mlp or cfg.intermediate_size)
    return max(widths)


def layer_activation_bytes_per_token(cfg: TextConfig) -> int:
    """16-bit tensors alive inside one layer per token: residual and normed input,
    q/k/v, attention output, and the MLP's gate, up and product. Attention scores
    are not materialised (flash/SDPA kernels)."""
    h, hd = cfg.hidden_size, cfg.head_size
    qkv = (cfg.num_attention_heads + 2 * cfg.kv_heads) * hd
    attn_out = cfg.num_attention_heads * hd
    return 2 * (2 * h + qkv + attn_out + 3 * mlp_width_per_token(cfg))


# llama.cpp evaluates a prompt in micro-batches of this many tokens (its default n_ubatch).
LLAMACPP_UBATCH = 512


def llamacpp_compute_bytes(cfg: TextConfig) -> int:
    """llama.cpp's compute buffer, modelled: the largest fp32 tensors of one micro-batch's graph, its
    logits (ubatch x vocabulary) and the MLP's gate and up projections (2 x ubatch x width).

    A model, not llama.cpp's graph allocator: against llama.cpp's own figure on this CPU it was
    +9% (Ministral 3B), +39% (Mistral Small 3 24B) and -16% (Mistral Small 2409 22B), within 1% of
    every run's total buffers (docs/measurements.md). Its output buffer is separate: one sequence's
    fp32 logits (`logits_bytes`).
    """
    return LLAMACPP_UBATCH * 4 * (cfg.vocab_size + 2 * mlp_width_per_token(cfg))


@dataclass(frozen=True)
class InferenceMemory:
    weights_bytes: int
    weights_floor_bytes: int
    kv_cache_bytes: int
    kv_bytes_per_token: int
    activations_bytes: int  # one prefill chunk inside one layer
    logits_bytes: int
    overhead_bytes: int
    budget_bytes: int | None

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.logits_bytes
                + self.overhead_bytes)

    @property
    def lower_bound_bytes(self) -> int:
        """The exact part: packed weights and the KV cache must be resident, whatever the engine."""
        return self.weights_floor_bytes + self.kv_cache_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.budget_bytes is None else self.total_bytes <= self.budget_bytes


def inference_memory(
    cfg: TextConfig,
    params: ParamCounts,
    fmt: WeightFormat,
    context: int,
    batch: int,
    overhead_bytes: int,
    budget_bytes: int | None,
    kv_dtype_bytes: int = 2,
) -> InferenceMemory:
    chunk = min(context * batch, PREFILL_CHUNK_TOKENS)
    # The engine samples from the last position of each sequence: fp32 logits plus the softmax copy.
    logits = batch * cfg.vocab_size * 4 * 2
    activations = chunk * layer_activation_bytes_per_token(cfg)
    if fmt.gguf:  # llama.cpp: the tensors of the GGUF file, exactly (text model; a vision tower is its own file)
        weights = floor = gguf_weight_bytes(cfg, fmt.name)
        activations, logits = llamacpp_compute_bytes(cfg), batch * cfg.vocab_size * 4
    else:
        weights, floor = weight_bytes(params, fmt), weight_floor_bytes(params, fmt)
    return InferenceMemory(
        weights_bytes=weights,
        weights_floor_bytes=floor,
        kv_cache_bytes=kv_cache_bytes(cfg, context, batch, kv_dtype_bytes),
        kv_bytes_per_token=kv_bytes_per_token(cfg, kv_dtype_bytes),
        activations_bytes=activations,
        logits_bytes=logits,
        overhead_bytes=overhead_bytes,
        budget_bytes=budget_bytes,
    )
