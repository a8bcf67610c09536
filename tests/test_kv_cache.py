"""KV cache arithmetic: exact bytes per token, each engine's window rules, and the engines' own code on real
caches (transformers' DynamicCache after a forward, vLLM's KV cache specs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config.hfconfig import from_hf_dict
from bench.estimate.memory import (
    KV_ENGINES,
    LLAMACPP_UBATCH,
    PREFILL_CHUNK_TOKENS,
    VLLM_BLOCK_TOKENS,
    kv_bytes_per_token,
    kv_cache_bytes,
    kv_slots_held,
)

CONFIGS = Path(__file__).parent / "configs"


def published(name: str):
    return from_hf_dict(json.loads((CONFIGS / f"{name}.json").read_text()), name)


@pytest.mark.parametrize("model_id,per_token", [
    ("mistral-3b", 2 * 26 * 8 * 128 * 2),
    ("mistral-small-22b", 2 * 56 * 8 * 128 * 2),
    ("mistral-3-small", 2 * 40 * 8 * 128 * 2),
    ("mixtral-8x22b", 2 * 56 * 8 * 128 * 2),
    ("mistral-medium-3", 2 * 80 * 8 * 128 * 2),
    ("llama-4-scout", 2 * 48 * 8 * 128 * 2),
])
def test_bytes_per_token(registry, model_id, per_token):
    for engine in KV_ENGINES:
        assert kv_bytes_per_token(registry.model(model_id).architecture, engine=engine) == per_token


def test_mla_caches_one_latent_per_token_and_layer_in_every_engine():
    # DeepSeek-V3: kv_lora_rank 512 + qk_rope_head_dim 64 per layer, not 128 heads x (192 + 128).
    for engine in KV_ENGINES:
        assert kv_bytes_per_token(published("DeepSeek-V3"), engine=engine) == 61 * (512 + 64) * 2
        assert kv_bytes_per_token(published("DeepSeek-V2-Lite"), 1, engine) == 27 * (512 + 64)


def test_attention_sinks_cost_no_cache():
    # gpt-oss-20b: 8 KV heads of 64 for K and V in 24 layers; its per-head sink logits are weights.
    assert kv_bytes_per_token(published("gpt-oss-20b")) == 24 * 2 * 8 * 64 * 2


def test_llama4_chunked_layers_by_engine(registry):
    cfg = registry.model("llama-4-scout").architecture
    per_layer_token = 2 * 8 * 128 * 2
    tokens = 2**20  # a multiple of both vLLM's block and llama.cpp's 256-cell padding
    # 36 chunked layers and 12 global ones; a chunked layer keeps at most its 8192-token chunk:
    # transformers the last 8191 tokens, vLLM a chunk plus one prefill chunk in flight, llama.cpp chunk + ubatch.
    held = {"transformers": 8191, "vllm": 8192 + PREFILL_CHUNK_TOKENS, "llama.cpp": 8192 + LLAMACPP_UBATCH}
    for engine, chunked in held.items():
        assert kv_cache_bytes(cfg, tokens, engine=engine) == (36 * chunked + 12 * tokens) * per_layer_token
        assert kv_cache_bytes(cfg, tokens, batch=3, engine=engine) == 3 * kv_cache_bytes(cfg, tokens, engine=engine)
    # Below the chunk every layer holds the whole context (vLLM and llama.cpp in whole blocks and cells).
    assert kv_cache_bytes(cfg, 4096, engine="transformers") == 48 * 4096 * per_layer_token
    assert kv_cache_bytes(cfg, 4096) == 48 * 4096 * per_layer_token


def test_gemma3_sliding_layers_by_engine():
    cfg = published("gemma-3-27b-it")
    assert cfg.attention_layer_types().count("sliding_attention") == 52  # five local layers to one global
    per_layer_token = 2 * 16 * 128 * 2
    tokens = 32_768
    vllm_sliding = (-(-(1024 - 1 + PREFILL_CHUNK_TOKENS) // VLLM_BLOCK_TOKENS) + 1) * VLLM_BLOCK_TOKENS
    held = {"transformers": 1023, "vllm": vllm_sliding, "llama.cpp": 1024 + LLAMACPP_UBATCH}
    for engine, sliding in held.items():
        assert kv_cache_bytes(cfg, tokens, engine=engine) == (52 * sliding + 10 * tokens) * per_layer_token


def test_llama_cpp_gives_phi3_no_window():
    cfg = published("Phi-3-mini-4k-instruct")  # sliding_window 2047 in its config.json
    assert kv_slots_held(cfg, "sliding_attention", 4096, "llama.cpp") == 4096
    assert kv_slots_held(cfg, "sliding_attention", 4096, "transformers") == 2046


def test_fp8_cache_halves_the_bytes(registry):
    cfg = registry.model("mistral-3-small").architecture
    for engine in KV_ENGINES:
        assert kv_cache_bytes(cfg, 1000, kv_dtype_bytes=1, engine=engine) * 2 == kv_cache_bytes(cfg, 1000,
                                                                                                engine=engine)


def test_an_unknown_engine_is_refused(registry):
    with pytest.raises(ValueError, match="unknown KV cache engine 'sglang'"):
        kv_cache_bytes(registry.model("tiny-llama").architecture, 10, engine="sglang")


def test_vllm_specs_reserve_what_the_rules_say():
    """vLLM's own KV cache specs (vllm.v1.kv_cache_interface) for the layers of gpt-oss, Llama 4 and DeepSeek."""
    torch = pytest.importorskip("torch")
    spec = pytest.importorskip("vllm.v1.kv_cache_interface")
    gpt_oss, tokens = published("gpt-oss-20b"), 131_072
    sliding = spec.SlidingWindowSpec(block_size=VLLM_BLOCK_TOKENS, num_kv_heads=8, head_size=64,
                                     dtype=torch.bfloat16, sliding_window=128)
    blocks = sliding.max_admission_blocks_per_request(max_in_flight_tokens=PREFILL_CHUNK_TOKENS,
                                                      max_model_len=tokens)
    assert kv_slots_held(gpt_oss, "sliding_attention", tokens) == blocks * VLLM_BLOCK_TOKENS
    assert sliding.page_size_bytes == VLLM_BLOCK_TOKENS * kv_bytes_per_token(gpt_oss) // 24
    scout = published("Llama-4-Scout-17B-16E-Instruct")
    chunked = spec.ChunkedLocalAttentionSpec(block_size=VLLM_BLOCK_TOKENS, num_kv_heads=8, head_size=128,
                                             dtype=torch.bfloat16, attention_chunk_size=8192)
    blocks = chunked.max_admission_blocks_per_request(max_in_flight_tokens=PREFILL_CHUNK_TOKENS,
                                                      max_model_len=1_000_000)
    assert kv_slots_held(scout, "chunked_attention", 1_000_000) == blocks * VLLM_BLOCK_TOKENS
    deepseek = published("DeepSeek-V3")
    mla = spec.MLAAttentionSpec(block_size=VLLM_BLOCK_TOKENS, num_kv_heads=1, head_size=512 + 64,
                                dtype=torch.bfloat16)
    assert mla.page_size_bytes == VLLM_BLOCK_TOKENS * kv_bytes_per_token(deepseek) // 61


TINY = dict(hidden_size=64, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=256, max_position_embeddings=512)


@pytest.mark.parametrize("fields", [
    {"model_type": "gemma3_text", "head_dim": 16, "sliding_window": 8, "sliding_window_pattern": 3},
    {"model_type": "gpt_oss", "num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 16, "sliding_window": 8},
    {"model_type": "qwen3", "head_dim": 32},
    {"model_type": "deepseek_v3", "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
     "first_k_dense_replace": 1, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
     "v_head_dim": 12, "n_group": 1, "topk_group": 1},
    {"model_type": "deepseek_v2", "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
     "q_lora_rank": None, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 12},
], ids=lambda f: f["model_type"])
def test_matches_a_real_transformers_cache(fields):
    """What transformers' DynamicCache holds after a 37-token forward of two sequences, byte for byte."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fields = {**TINY, **fields}
    cfg = from_hf_dict(fields, fields["model_type"])
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**fields))
    tokens = 37
    with torch.no_grad():
        out = model.to(torch.bfloat16).eval()(torch.randint(0, cfg.vocab_size, (2, tokens)), use_cache=True)
    held = sum(t.numel() * t.element_size() for layer in out.past_key_values.layers
               for t in (layer.keys, layer.values))
    assert held == kv_cache_bytes(cfg, tokens, batch=2, engine="transformers")


def test_matches_the_registry_tiny_llama_cache(registry):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = registry.model("tiny-llama").architecture
    hf_config = transformers.AutoConfig.for_model(**cfg.model_dump(exclude_none=True))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf_config).to(torch.bfloat16).eval()
    tokens = 37
    with torch.no_grad():
        out = model(torch.randint(0, cfg.vocab_size, (2, tokens)), use_cache=True)
    cache = out.past_key_values
    held = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert held == kv_cache_bytes(cfg, tokens, batch=2, engine="transformers")
    # vLLM reserves whole 16-token blocks: 48 slots for 37 tokens.
    assert kv_cache_bytes(cfg, tokens, batch=2) == held // tokens * 48


@pytest.mark.parametrize("fields", [
    {"model_type": "gemma3_text", "num_hidden_layers": 6},  # one global layer, five sliding
    {"model_type": "gpt_oss", "num_hidden_layers": 4, "num_local_experts": 4, "num_experts_per_tok": 2},
], ids=lambda f: f["model_type"])
@pytest.mark.parametrize("context", [2048, 700, 300])
def test_matches_the_caches_llama_cpp_allocates(tmp_path, fields, context):
    """llama.cpp's own account of its caches (cells and layers of each) for a tiny GGUF, loaded through bench's
    backend (swa_full off, n_ubatch min(512, context)): the padding to 256 cells and the n_swa + n_ubatch cap."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    from bench.backends import EngineSettings, create_backend
    from bench.weights.synthetic_gguf import write_f16_skeleton

    cfg = from_hf_dict({"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
                        "intermediate_size": 256, "vocab_size": 1024, "max_position_embeddings": 8192,
                        "sliding_window": 128, **fields}, fields["model_type"])
    path = tmp_path / "tiny.gguf"
    write_f16_skeleton(cfg, path, "tiny")
    backend = create_backend("llama.cpp", EngineSettings(model_path=str(path), device="cpu", max_model_len=context))
    backend.load()
    try:
        caches = backend.engine_info()["kv_caches"]
    finally:
        backend.close()
    allocated: dict[int, int] = {}
    for cache in caches:
        allocated[cache["cells"]] = allocated.get(cache["cells"], 0) + cache["layers"]
    ours: dict[int, int] = {}
    for layer_type in cfg.attention_layer_types():
        cells = kv_slots_held(cfg, layer_type, context, "llama.cpp")
        ours[cells] = ours.get(cells, 0) + 1
    assert allocated == ours
