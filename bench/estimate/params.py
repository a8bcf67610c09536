"""Parameter counts from the architecture alone, split by what a quantiser does with them.

The split matters twice: quantisers pack the linear layers (attention, MLP,
experts) and leave embeddings, lm_head, norms, routers and biases in 16 bits;
and an MoE model holds every expert in memory but reads only the routed ones
per token. Counts match what transformers builds from the same config (the
tests check this on the meta device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.config.hfconfig import TextConfig


@dataclass(frozen=True)
class ParamCounts:
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    norms: int
    attention: int  # q, k, v, o weight matrices (with MLA: its down- and up-projections)
    dense_mlp: int  # dense MLPs and shared experts
    experts: int  # every routed expert
    active_experts: int  # routed experts one token passes through
    router: int  # routing weights, their biases, and a shared expert's gate
    biases: int
    extra: int = 0  # outside the text model (vision tower, projector)
    sinks: int = 0  # attention sinks: one learned logit per head per layer (gpt-oss)
    expert_biases: int = 0  # every routed expert's biases (gpt-oss), kept in 16 bits like the others
    active_expert_biases: int = 0  # those of the routed experts one token passes through

    @property
    def high_precision(self) -> int:
        """Tensors every format keeps in 16 bits."""
        return (self.embedding + self.lm_head + self.norms + self.router + self.biases + self.sinks
                + self.expert_biases + self.extra)

    @property
    def text(self) -> int:
        return self.attention + self.dense_mlp + self.experts + self.high_precision - self.extra

    @property
    def total(self) -> int:
        return self.text + self.extra

    @property
    def active(self) -> int:
        """Text parameters one token touches, embeddings included (the convention of '39B active')."""
        return self.text - self.experts + self.active_experts - self.expert_biases + self.active_expert_biases


@dataclass(frozen=True)
class Layout:
    """How a family lays out the small tensors around its linear layers, as transformers 5.19 builds them
    (the `models/<family>/modeling_<family>.py` of each)."""

    hidden_norms: int = 2  # RMSNorms of hidden size per layer (gemma2/3: before and after attention and MLP)
    # q_norm/k_norm: "head" over one head's width (shared by all heads), "projection" over the whole q and
    # k projections (olmo2). Llama 4's qk-norm is a weightless L2 norm, so none.
    qk_norm: Literal["head", "projection"] | None = None
    qkv_bias: bool = False  # q/k/v always carry a bias, o never (qwen2; qwen2_moe unless qkv_bias is false)
    sinks: bool = False  # one learned attention-sink logit per head per layer (gpt_oss)
    expert_biases: bool = False  # routed experts' gate_up and down biases (gpt_oss)
    router_bias: bool = False  # a bias per expert on the router (gpt_oss)
    # deepseek_v3's gate adds a per-expert e_score_correction_bias before top-k: a buffer in transformers,
    # but a tensor of the checkpoint, so counted with the router.
    router_correction_bias: bool = False
    shared_expert_gate: bool = False  # a hidden -> 1 gate on the shared expert's output (qwen2_moe)


LAYOUTS: dict[str, Layout] = {
    "qwen2": Layout(qkv_bias=True),
    "qwen2_moe": Layout(qkv_bias=True, shared_expert_gate=True),
    "gemma2": Layout(hidden_norms=4),
    "gemma3_text": Layout(hidden_norms=4, qk_norm="head"),
    "qwen3": Layout(qk_norm="head"),
    "qwen3_moe": Layout(qk_norm="head"),
    "olmo2": Layout(qk_norm="projection"),  # post-attention and post-MLP norms only: two of hidden size
    "gpt_oss": Layout(sinks=True, expert_biases=True, router_bias=True),
    "deepseek_v3": Layout(router_correction_bias=True),
}
DEFAULT_LAYOUT = Layout()  # llama, mistral, ministral3, mixtral, gemma, llama4_text, phi3, granite, deepseek


def layout_of(cfg: TextConfig) -> Layout:
    return LAYOUTS.get(cfg.model_type, DEFAULT_LAYOUT)


def attention_params(cfg: TextConfig) -> tuple[int, int]:
    """Weights and biases of one attention block. Phi-3 fuses q/k/v into one qkv_proj: the same count."""
    if cfg.is_mla:
        return mla_params(cfg)
    h, hd = cfg.hidden_size, cfg.head_size
    q, kv = cfg.num_attention_heads * hd, cfg.kv_heads * hd
    weights = h * q + 2 * h * kv + q * h
    if layout_of(cfg).qkv_bias:
        biases = q + 2 * kv if cfg.qkv_bias is not False else 0
    elif cfg.attention_bias:
        biases = q + 2 * kv + h
    else:
        biases = 0
    return weights, biases


def mla_params(cfg: TextConfig) -> tuple[int, int]:
    """Multi-head latent attention (deepseek): q through an optional low-rank bottleneck, K and V
    expanded from one latent of kv_lora_rank plus a shared RoPE key; attention_bias puts biases on the
    down-projections and o_proj only (transformers' DeepseekV3Attention)."""
    h, heads = cfg.hidden_size, cfg.num_attention_heads
    rope, latent = cfg.qk_rope_head_dim or 0, cfg.kv_lora_rank or 0
    q_out = heads * cfg.head_size
    q = h * q_out if cfg.q_lora_rank is None else h * cfg.q_lora_rank + cfg.q_lora_rank * q_out
    kv = h * (latent + rope) + latent * heads * ((cfg.qk_nope_head_dim or 0) + cfg.value_head_size)
    o = heads * cfg.value_head_size * h
    biases = ((cfg.q_lora_rank or 0) + latent + rope + h) if cfg.attention_bias else 0
    return q + kv + o, biases


def mlp_params(cfg: TextConfig, width: int) -> tuple[int, int]:
    """Weights and biases of one gated MLP (gate, up, down) of the given width. Phi-3 fuses gate and up
    into one gate_up_proj: the same count."""
    weights = 3 * cfg.hidden_size * width
    biases = (2 * width + cfg.hidden_size) if cfg.mlp_bias else 0
    return weights, biases


def norms_per_layer(cfg: TextConfig) -> int:
    """Norm weights in one layer: the hidden-size norms, q/k norms, and MLA's latent norms."""
    layout, hd = layout_of(cfg), cfg.head_size
    total = layout.hidden_norms * cfg.hidden_size
    if layout.qk_norm == "head":
        total += 2 * hd
    elif layout.qk_norm == "projection":
        total += (cfg.num_attention_heads + cfg.kv_heads) * hd
    if cfg.is_mla:
        total += (cfg.q_lora_rank or 0) + (cfg.kv_lora_rank or 0)
    return total


def count_params(cfg: TextConfig, extra: int = 0) -> ParamCounts:
    h, layers, layout = cfg.hidden_size, cfg.num_hidden_layers, layout_of(cfg)
    attn_w, attn_b = attention_params(cfg)
    moe_layers = cfg.moe_layer_indices()
    dense_w, dense_b = mlp_params(cfg, cfg.dense_width)
    shared_w, shared_b = mlp_params(cfg, cfg.shared_expert_width) if cfg.shared_expert_width else (0, 0)
    expert_w = 3 * h * cfg.expert_width
    n_experts, k = cfg.routed_experts, cfg.num_experts_per_tok or 0

    dense_mlp = biases = experts = active_experts = router = expert_biases = active_expert_biases = 0
    for i in range(layers):
        biases += attn_b
        if i in moe_layers:
            experts += n_experts * expert_w
            active_experts += k * expert_w
            dense_mlp += shared_w
            biases += shared_b
            router += n_experts * h
            router += n_experts * (layout.router_bias + layout.router_correction_bias)
            if layout.shared_expert_gate:
                router += h
            if layout.expert_biases:
                expert_biases += n_experts * (2 * cfg.expert_width + h)
                active_expert_biases += k * (2 * cfg.expert_width + h)
        else:
            dense_mlp += dense_w
            biases += dense_b
    embedding = cfg.vocab_size * h
    return ParamCounts(
        embedding=embedding,
        lm_head=0 if cfg.tie_word_embeddings else embedding,
        norms=layers * norms_per_layer(cfg) + h,
        attention=layers * attn_w,
        dense_mlp=dense_mlp,
        experts=experts,
        active_experts=active_experts,
        router=router,
        biases=biases,
        extra=extra,
        sinks=layers * cfg.num_attention_heads if layout.sinks else 0,
        expert_biases=expert_biases,
        active_expert_biases=active_expert_biases,
    )
