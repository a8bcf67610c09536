"""Parameter counts against what transformers itself builds, on the meta device (no memory used)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bench.config.hfconfig import from_hf_dict  # noqa: E402
from bench.estimate.params import count_params  # noqa: E402

TINY = dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=256, vocab_size=512, max_position_embeddings=512)
FAMILIES = {
    "llama": {},
    "llama-biases": {"model_type": "llama", "attention_bias": True, "mlp_bias": True},
    "mistral": {},
    "ministral3": {},
    "qwen2": {},  # q/k/v biases
    "gemma": {},  # tied embeddings, head_dim 256
    "gemma2": {},  # four norms per layer, alternating sliding window
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "llama4_text": {"num_local_experts": 4, "intermediate_size_mlp": 384, "head_dim": 64},
    "llama4-interleaved": {"model_type": "llama4_text", "num_local_experts": 4, "intermediate_size_mlp": 384,
                           "interleave_moe_layer_step": 2, "head_dim": 64},
    "qwen3": {"head_dim": 32},  # q_norm/k_norm over one head
    "qwen3-biases": {"model_type": "qwen3", "attention_bias": True},
    "gemma3_text": {"head_dim": 32},  # four norms per layer and q/k norms
    "gpt_oss": {"num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 32},  # sinks, expert and router biases
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64, "mlp_only_layers": [1]},
    "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                  "shared_expert_intermediate_size": 96, "decoder_sparse_step": 2},  # shared expert and its gate
    "deepseek_v3": {"n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                    "first_k_dense_replace": 1, "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
                    "qk_rope_head_dim": 8, "v_head_dim": 24, "n_shared_experts": 2, "n_group": 1, "topk_group": 1},
    "deepseek_v2": {"n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                    "first_k_dense_replace": 1, "q_lora_rank": None, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
                    "qk_rope_head_dim": 8, "v_head_dim": 24, "n_shared_experts": 2},  # full-rank q_proj
    "phi3": {"pad_token_id": None},  # fused qkv_proj and gate_up_proj; its default pad id is past this vocabulary
    "olmo2": {},  # q/k norms over the whole projection, post-norms only
    "granite-biases": {"model_type": "granite", "attention_bias": True, "mlp_bias": True},
}


def transformers_count(fields: dict) -> tuple[int, object]:
    """Parameters plus persistent buffers (DeepSeek-V3's router correction bias is one): what a checkpoint holds."""
    config = transformers.AutoConfig.for_model(**fields)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    kept = set(model.state_dict())
    buffers = sum(b.numel() for name, b in model.named_buffers() if name in kept)
    return sum(p.numel() for p in model.parameters()) + buffers, config


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_config_counts_match_transformers(name):
    fields = {**TINY, "model_type": name, **FAMILIES[name]}
    expected, _ = transformers_count(fields)
    assert count_params(from_hf_dict(fields, name)).text == expected


def test_every_registry_model_counts_match_transformers(registry):
    for spec in registry.models.values():
        expected, config = transformers_count(spec.architecture.model_dump(exclude_none=True))
        counts = count_params(spec.architecture, spec.extra_params)
        assert counts.text == expected, spec.id
        if hasattr(config, "layer_types") and config.layer_types is not None:
            assert spec.architecture.attention_layer_types() == list(config.layer_types), spec.id


@pytest.mark.parametrize("model_id,total,active", [
    # Computed from the config fields in model-facts.md; they agree with the published 22.247B,
    # 23.572B, 141B/39B, 109B/17B and 402B/17B.
    ("mistral-3b", 3_849_090_048, 3_429_006_336),
    ("mistral-small-22b", 22_247_282_688, 22_247_282_688),
    ("mistral-3-small", 23_572_403_200, 23_572_403_200),
    ("mixtral-8x22b", 140_630_071_296, 39_161_468_928),
    ("llama-4-scout", 108_641_793_536, 17_172_894_720),
    ("llama-4-maverick", 401_583_781_376, 17_184_691_200),
])
def test_seed_models_total_and_active(registry, model_id, total, active):
    spec = registry.model(model_id)
    counts = count_params(spec.architecture, spec.extra_params)
    assert (counts.total, counts.active) == (total, active)


def test_published_counts_within_two_percent(registry):
    for spec in registry.models.values():
        counts = count_params(spec.architecture, spec.extra_params)
        for key, published in spec.published_params.items():
            counted = {"total": counts.total, "active": counts.active, "text": counts.text,
                       "extra": counts.extra}[key]
            assert abs(counted - published) / published < 0.06, (spec.id, key, counted, published)
