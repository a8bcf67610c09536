"""KV cache arithmetic: exact bytes per token, window caps, and a real transformers cache."""

from __future__ import annotations

import pytest

from bench.estimate.memory import kv_bytes_per_token, kv_cache_bytes


@pytest.mark.parametrize("model_id,per_token", [
    ("mistral-3b", 2 * 26 * 8 * 128 * 2),
    ("mistral-small-22b", 2 * 56 * 8 * 128 * 2),
    ("mistral-3-small", 2 * 40 * 8 * 128 * 2),
    ("mixtral-8x22b", 2 * 56 * 8 * 128 * 2),
    ("mistral-medium-3", 2 * 80 * 8 * 128 * 2),
    ("llama-4-scout", 2 * 48 * 8 * 128 * 2),
])
def test_bytes_per_token(registry, model_id, per_token):
    assert kv_bytes_per_token(registry.model(model_id).architecture) == per_token


def test_llama4_chunked_layers_cap_at_8192_tokens(registry):
    cfg = registry.model("llama-4-scout").architecture
    per_layer_token = 2 * 8 * 128 * 2
    # 36 chunked layers hold at most 8192 tokens; the 12 global layers hold all of them.
    assert kv_cache_bytes(cfg, 4096) == 48 * 4096 * per_layer_token
    assert kv_cache_bytes(cfg, 1_000_000) == (36 * 8192 + 12 * 1_000_000) * per_layer_token
    assert kv_cache_bytes(cfg, 1_000_000, batch=3) == 3 * kv_cache_bytes(cfg, 1_000_000)


def test_fp8_cache_halves_the_bytes(registry):
    cfg = registry.model("mistral-3-small").architecture
    assert kv_cache_bytes(cfg, 1000, kv_dtype_bytes=1) * 2 == kv_cache_bytes(cfg, 1000)


def test_matches_a_real_transformers_cache(registry):
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
    assert held == kv_cache_bytes(cfg, tokens, batch=2)
