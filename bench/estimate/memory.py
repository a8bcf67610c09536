"""Inference memory: weights, KV cache, activations, logits and runtime overhead.

Weights and KV cache are exact arithmetic on the architecture; activations,
logits and overhead are modelled, with the assumptions stated here. The exact
part alone is the *lower bound* a claim can be refuted with.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache

from bench.config.hfconfig import LayerType, TextConfig, per_config
from bench.estimate.gguf import gguf_weight_bytes
from bench.estimate.params import ParamCounts
from bench.estimate.quant import WeightFormat, weight_bytes_of

GIB = 2**30
# Tokens one prefill step processes at most. A chunked-prefill engine (vLLM) caps a step by
# its `max_num_batched_tokens`; 8192 is bench's stated assumption, not a measured engine default.
PREFILL_CHUNK_TOKENS = 8192
KV_DTYPE_BYTES = {"auto": 2, "bf16": 2, "fp16": 2, "fp8": 1}
# llama.cpp evaluates a prompt in micro-batches of this many tokens (its default n_ubatch).
LLAMACPP_UBATCH = 512


def weight_bytes(params: ParamCounts, fmt: WeightFormat) -> int:
    """Packed linear layers at the format's bits, everything else at 16 bits."""
    linear = params.attention + params.dense_mlp
    return int(weight_bytes_of(fmt, linear, params.experts, params.high_precision))


def weight_floor_bytes(params: ParamCounts, fmt: WeightFormat) -> int:
    """The weights at this bit width if every linear weight were packed, fused MoE experts included:
    what any implementation of the format needs at least, whatever today's libraries do."""
    return weight_bytes(params, _packing_experts(fmt))


@lru_cache(maxsize=None)
def _packing_experts(fmt: WeightFormat) -> WeightFormat:
    """The format with its fused experts packed too: made once per format, not once per estimate."""
    return replace(fmt, packs_fused_experts=True)


# The engines whose KV cache rules bench models; vLLM's is the default (the engine bench serves with).
KV_ENGINES = ("vllm", "llama.cpp", "transformers")
DEFAULT_KV_ENGINE = "vllm"
# vLLM pages the cache in blocks of this many tokens (vllm 0.32 config/cache.py:72, CacheConfig.DEFAULT_BLOCK_SIZE).
VLLM_BLOCK_TOKENS = 16
# llama.cpp pads its caches to a multiple of this many cells: the context (tests/test_llamacpp.py measures 256
# cells for a 200-token context) and the sliding-window cache (src/llama-kv-cache-iswa.cpp: "the SWA cache is
# always padded to 256 for performance", ggml-org/llama.cpp issue 17037).
LLAMACPP_PAD = 256
# Families llama.cpp gives a sliding-window (or chunked) cache. Others load without one even when their config has
# a window: Phi-3's is switched off (src/llama-model.cpp, "Phi SWA is currently disabled", PR 13676), and
# Mistral and Qwen2 convert to architectures without a window.
LLAMACPP_SWA_MODEL_TYPES = frozenset({"gemma2", "gemma3_text", "gpt_oss", "llama4_text"})
# bench's llama.cpp backend builds its context with swa_full=False (bench/backends/llamacpp.py:114, SWA_FULL), so
# sliding layers keep their window only. The vendored library's own default is swa_full=True (llama-cpp-python
# 0.3.36: llama_cpp.llama_context_default_params().swa_full, read at runtime; llama.cpp's llama_context_params),
# which keeps the whole context in every layer.
LLAMACPP_SWA_FULL = False


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _check_engine(engine: str) -> None:
    if engine not in KV_ENGINES:
        raise ValueError(f"unknown KV cache engine {engine!r}; known: {', '.join(KV_ENGINES)}")


def kv_bytes_per_token_per_layer(cfg: TextConfig, kv_dtype_bytes: int = 2, engine: str = DEFAULT_KV_ENGINE) -> int:
    """What one token costs in one layer's cache.

    Multi-head latent attention (deepseek) caches one latent of kv_lora_rank plus the shared RoPE key per token,
    not K and V per head, in every engine bench models: vLLM's MLA layer caches one "head" of kv_lora_rank +
    qk_rope_head_dim (vllm 0.32 model_executor/layers/attention/mla_attention.py:479, with head_size_v 0 in
    v1/kv_cache_interface.py:698 MLAAttentionSpec), llama.cpp's deepseek2 graph stores the same latent, and
    transformers 5.19 caches the latent as `keys` and the RoPE key as `values` (measured on a tiny DeepSeek-V3:
    tests/test_kv_cache.py). Everything else: K and V per KV head. Attention sinks (gpt-oss) are weights, not cache.
    """
    _check_engine(engine)
    if cfg.is_mla:
        return ((cfg.kv_lora_rank or 0) + (cfg.qk_rope_head_dim or 0)) * kv_dtype_bytes
    return cfg.kv_heads * (cfg.head_size + cfg.value_head_size) * kv_dtype_bytes


def kv_bytes_per_token(cfg: TextConfig, kv_dtype_bytes: int = 2, engine: str = DEFAULT_KV_ENGINE) -> int:
    """What one token costs in every layer's cache (while it is inside every layer's window)."""
    return cfg.num_hidden_layers * kv_bytes_per_token_per_layer(cfg, kv_dtype_bytes, engine)


def kv_slots_held(cfg: TextConfig, layer_type: LayerType, tokens: int, engine: str = DEFAULT_KV_ENGINE) -> int:
    """Token slots one sequence of `tokens` needs in one layer's cache, by each engine's rule.

    vLLM reserves what its admission check reserves per request: whole blocks of VLLM_BLOCK_TOKENS; a sliding
    layer the last window - 1 tokens plus those in flight in one prefill chunk, plus one block because the window
    need not start on a block boundary (vllm 0.32 v1/kv_cache_interface.py:873-885,
    SlidingWindowSpec.max_admission_blocks_per_request); a chunked layer (Llama 4) one chunk plus those in flight
    (:826-830). In-flight tokens are one PREFILL_CHUNK_TOKENS step (vLLM counts one such step per concurrent batch,
    config/vllm.py:590-598; asynchronous scheduling would count two).

    llama.cpp sizes its caches once, for the context padded to LLAMACPP_PAD cells; a sliding cache holds n_swa +
    n_ubatch cells, at most the context, padded again (ggml-org/llama.cpp src/llama-kv-cache-iswa.cpp:71-75,
    `size_swa = GGML_PAD(std::min(size_base, n_swa + n_ubatch), 256)` for one sequence), or the whole context with
    swa_full; only LLAMACPP_SWA_MODEL_TYPES get one. tests/test_kv_cache.py holds this to the cells the vendored
    llama.cpp reports allocating.

    transformers' DynamicSlidingWindowLayer keeps the last window - 1 tokens after each forward (5.19
    cache_utils.py:257-260); chunked layers use the same layer with the chunk as window.
    """
    _check_engine(engine)
    window = cfg.kv_window(layer_type)
    if engine == "vllm":
        if window is None:
            return _cdiv(tokens, VLLM_BLOCK_TOKENS) * VLLM_BLOCK_TOKENS
        in_flight = min(tokens, PREFILL_CHUNK_TOKENS)
        if layer_type == "chunked_attention":
            return _cdiv(min(window + in_flight, tokens), VLLM_BLOCK_TOKENS) * VLLM_BLOCK_TOKENS
        return (_cdiv(min(window - 1 + in_flight, tokens), VLLM_BLOCK_TOKENS) + 1) * VLLM_BLOCK_TOKENS
    if engine == "llama.cpp":
        cells = _cdiv(tokens, LLAMACPP_PAD) * LLAMACPP_PAD
        if window is None or LLAMACPP_SWA_FULL or cfg.model_type not in LLAMACPP_SWA_MODEL_TYPES:
            return cells
        return _cdiv(min(cells, window + LLAMACPP_UBATCH), LLAMACPP_PAD) * LLAMACPP_PAD
    return tokens if window is None else min(tokens, window - 1)


def kv_cache_bytes(cfg: TextConfig, tokens: int, batch: int = 1, kv_dtype_bytes: int = 2,
                   engine: str = DEFAULT_KV_ENGINE) -> int:
    """KV cache for `batch` sequences of `tokens` under one engine's rules (`kv_slots_held`), sliding and chunked
    layers capped at what that engine keeps of their window."""
    per_layer_token = kv_bytes_per_token_per_layer(cfg, kv_dtype_bytes, engine)
    held = sum(count * kv_slots_held(cfg, layer_type, tokens, engine)
               for layer_type, count in layer_type_counts(cfg))
    return per_layer_token * held * batch


@per_config
def layer_type_counts(cfg: TextConfig) -> tuple[tuple[LayerType, int], ...]:
    """(attention type, how many layers have it): every layer of a type holds the same slots, so the cache
    is summed over the (at most three) types, not over each of a hundred layers at every step of a search."""
    return tuple(Counter(cfg.attention_layer_types()).items())


@per_config
def mlp_width_per_token(cfg: TextConfig) -> int:
    """Widest MLP activation one token produces in a layer: the routed experts it visits plus the shared expert
    in an MoE layer, the dense MLP in any other (deepseek's first layers, Llama 4's interleaved ones)."""
    if not cfg.is_moe:
        return cfg.dense_width
    widths = [cfg.expert_width * (cfg.num_experts_per_tok or 1) + cfg.shared_expert_width]
    if len(cfg.moe_layer_indices()) < cfg.num_hidden_layers:
        widths.append(cfg.dense_width)
    return max(widths)


def layer_activation_bytes_per_token(cfg: TextConfig) -> int:
    """16-bit tensors alive inside one layer per token: residual and normed input,
    q/k/v, attention output, and the MLP's gate, up and product. Attention scores
    are not materialised (flash/SDPA kernels)."""
    h, hd = cfg.hidden_size, cfg.head_size
    qkv = (cfg.num_attention_heads + 2 * cfg.kv_heads) * hd
    attn_out = cfg.num_attention_heads * hd
    return 2 * (2 * h + qkv + attn_out + 3 * mlp_width_per_token(cfg))



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
    kv_engine: str = DEFAULT_KV_ENGINE  # whose cache rules kv_cache_bytes follows (`kv_slots_held`)

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.logits_bytes
                + self.overhead_bytes)

    @property
    def lower_bound_bytes(self) -> int:
        """The exact part: packed weights and the KV cache (as `kv_engine` holds it) must be resident."""
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
    kv_engine: str | None = None,
) -> InferenceMemory:
    """One configuration's inference memory. `kv_engine` picks whose KV cache rules apply; by default the
    engine that runs the format: llama.cpp for a GGUF type, vLLM otherwise."""
    engine = kv_engine or ("llama.cpp" if fmt.gguf else DEFAULT_KV_ENGINE)
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
        kv_cache_bytes=kv_cache_bytes(cfg, context, batch, kv_dtype_bytes, engine),
        kv_bytes_per_token=kv_bytes_per_token(cfg, kv_dtype_bytes, engine),
        activations_bytes=activations,
        logits_bytes=logits,
        overhead_bytes=overhead_bytes,
        budget_bytes=budget_bytes,
        kv_engine=engine,
    )
