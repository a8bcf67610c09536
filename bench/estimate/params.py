"""Parameter counts from the architecture alone, split by what a quantiser does with them.

The split matters twice: quantisers pack the linear layers (attention, MLP,
experts) and leave embeddings, lm_head, norms, routers and biases in 16 bits;
and an MoE model holds every expert in memory but reads only the routed ones
per token. Counts match what transformers builds from the same config (the
tests check this on the meta device).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config.hfconfig import TextConfig


@dataclass(frozen=True)
class ParamCounts:
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    norms: int
    attention: int  # q, k, v, o weight matrices
    dense_mlp: int  # dense MLPs and shared experts
    experts: int  # every routed expert
    active_experts: int  # routed experts one token passes through
    router: int
    biases: int
    extra: int = 0  # outside the text model (vision tower, projector)

    @property
    def high_precision(self) -> int:
        """Tensors every format keeps in 16 bits."""
        return self.embedding + self.lm_head + self.norms + self.router + self.biases + self.extra

    @property
    def text(self) -> int:
        return self.attention + self.dense_mlp + self.experts + self.high_precision - self.extra

    @property
    def total(self) -> int:
        return self.text + self.extra

    @property
    def active(self) -> int:
        """Text parameters one token touches, embeddings included (the convention of '39B active')."""
        return self.text - self.experts + self.active_experts


def attention_params(cfg: TextConfig) -> tuple[int, int]:
    """Weights and biases of one attention block."""
    h, hd = cfg.hidden_size, cfg.head_size
    q, kv = cfg.num_attention_heads * hd, cfg.kv_heads * hd
    weights = h * q + 2 * h * kv + q * h
    if cfg.model_type == "qwen2":  # q/k/v always carry a bias, o never
        biases = q + 2 * kv
    elif cfg.attention_bias:
        biases = q + 2 * kv + h
    else:
        biases = 0
    return weights, biases


def mlp_params(cfg: TextConfig, width: int) -> tuple[int, int]:
    """Weights and biases of one gated MLP (gate, up, down) of the given width."""
    weights = 3 * cfg.hidden_size * width
    biases = (2 * width + cfg.hidden_size) if cfg.mlp_bias else 0
    return weights, biases


def norms_per_layer(cfg: TextConfig) -> int:
    # Gemma 2 norms both before and after attention and MLP; the others norm before each.
    # Llama 4's qk-norm is a weightless L2 norm.
    return 4 if cfg.model_type == "gemma2" else 2


def count_params(cfg: TextConfig, extra: int = 0) -> ParamCounts:
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    attn_w, attn_b = attention_params(cfg)
    moe_layers = cfg.moe_layer_indices()
    dense_width = cfg.intermediate_size_mlp if cfg.model_type == "llama4_text" else cfg.intermediate_size
    dense_w, dense_b = mlp_params(cfg, dense_width or cfg.intermediate_size)
    expert_w, expert_b = mlp_params(cfg, cfg.intermediate_size)

    dense_mlp = biases = experts = active_experts = router = 0
    for i in range(layers):
        biases += attn_b
        if i in moe_layers:
            n_experts, k = cfg.num_local_experts or 0, cfg.num_experts_per_tok or 0
            experts += n_experts * expert_w
            active_experts += k * expert_w
            router += n_experts * h
            dense_mlp += cfg.shared_experts * expert_w
            biases += (n_experts + cfg.shared_experts) * expert_b
        else:
            dense_mlp += dense_w
            biases += dense_b
    embedding = cfg.vocab_size * h
    return ParamCounts(
        embedding=embedding,
        lm_head=0 if cfg.tie_word_embeddings else embedding,
        norms=layers * norms_per_layer(cfg) * h + h,
        attention=layers * attn_w,
        dense_mlp=dense_mlp,
        experts=experts,
        active_experts=active_experts,
        router=router,
        biases=biases,
        extra=extra,
    )
