"""Current architectures from their published config.json: exact parameter counts against what transformers
builds on the meta device, published checkpoint totals, and the KV cache each engine keeps.

The configs live in tests/configs/<repository>.json, each with a `_source` naming where its numbers came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config.hfconfig import WRAPPER_MODEL_TYPES, from_hf_dict
from bench.estimate.params import count_params

CONFIGS = Path(__file__).parent / "configs"
ARCHITECTURES = {  # file: the text model_type it must parse as
    "Llama-3.1-8B": "llama",
    "Qwen3-8B": "qwen3",
    "Qwen3-30B-A3B": "qwen3_moe",
    "gemma-3-27b-it": "gemma3_text",
    "gpt-oss-20b": "gpt_oss",
    "DeepSeek-V3": "deepseek_v3",
    "DeepSeek-V2-Lite": "deepseek_v2",
    "Phi-3-mini-4k-instruct": "phi3",
    "OLMo-2-1124-7B": "olmo2",
    "granite-3.3-8b-instruct": "granite",
    "Qwen1.5-MoE-A2.7B-Chat": "qwen2_moe",
}
# Keys of a config.json that are not architecture: where it came from, remote code transformers would be asked
# to trust (the built-in class of the model_type is what bench plans for), and the checkpoint's storage format.
NOT_ARCHITECTURE = ("_source", "auto_map", "quantization_config")


def raw_config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def transformers_text_model(raw: dict, **overrides):
    """The text model transformers builds from a config.json, on the meta device (nothing allocated)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fields = {k: v for k, v in raw.items() if k not in NOT_ARCHITECTURE}
    config = transformers.AutoConfig.for_model(**fields)
    if fields["model_type"] in WRAPPER_MODEL_TYPES:
        config = config.text_config
    for key, value in overrides.items():
        setattr(config, key, value)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config), config


def tensors_in_checkpoint(model) -> int:
    """Parameters plus persistent buffers: what a checkpoint stores (DeepSeek-V3's router correction bias is a
    buffer); a tied lm_head counts once."""
    kept = set(model.state_dict())
    return (sum(p.numel() for p in model.parameters())
            + sum(b.numel() for name, b in model.named_buffers() if name in kept))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_config_parses_as_its_family(name):
    assert from_hf_dict(raw_config(name), name).model_type == ARCHITECTURES[name]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_total_matches_what_transformers_builds(name):
    raw = raw_config(name)
    cfg = from_hf_dict(raw, name)
    model, hf_config = transformers_text_model(raw)
    assert count_params(cfg).total == tensors_in_checkpoint(model)
    if getattr(hf_config, "layer_types", None) is not None:
        assert cfg.attention_layer_types() == list(hf_config.layer_types)


@pytest.mark.parametrize("name,published", [
    ("Llama-3.1-8B", 8_030_261_248),
    ("Qwen3-8B", 8_190_735_360),
    ("Qwen3-30B-A3B", 30_532_122_624),
    ("gpt-oss-20b", 20_914_757_184),
    ("DeepSeek-V3", 671_026_419_200),
    ("DeepSeek-V2-Lite", 15_706_484_224),
])
def test_published_checkpoint_totals(name, published):
    assert count_params(from_hf_dict(raw_config(name), name)).total == published


def test_gpt_oss_120b_is_the_20b_shape_with_36_layers_and_128_experts():
    # OpenAI's model card: 116,829,156,672 parameters; 36 layers of 128 experts (the 20b: 24 of 32).
    raw = {**raw_config("gpt-oss-20b"), "num_hidden_layers": 36, "num_local_experts": 128}
    raw["layer_types"] = ["sliding_attention", "full_attention"] * 18
    counts = count_params(from_hf_dict(raw, "gpt-oss-120b"))
    assert counts.total == 116_829_156_672
    # The card's active counts, 5.13B (120b) and 3.61B (20b), leave out the embedding lookup and the biases of the
    # experts a token does not visit.
    assert round((counts.active - counts.embedding) / 1e9, 2) == 5.13
    counts_20b = count_params(from_hf_dict(raw_config("gpt-oss-20b"), "gpt-oss-20b"))
    assert round((counts_20b.active - counts_20b.embedding) / 1e9, 2) == 3.61


def test_gemma3_text_model_is_the_checkpoint_less_its_vision_tower():
    # google/gemma-3-27b-it holds 27,432,406,640 parameters (hub safetensors.total); the SigLIP tower and the
    # projector transformers builds from the same config.json are the rest.
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    raw = raw_config("gemma-3-27b-it")
    config = transformers.AutoConfig.for_model(**{k: v for k, v in raw.items() if k not in NOT_ARCHITECTURE})
    with torch.device("meta"):
        full = transformers.Gemma3ForConditionalGeneration(config)
    outside_text = sum(p.numel() for n, p in full.named_parameters() if ".language_model." not in n
                       and not n.startswith("lm_head"))
    assert count_params(from_hf_dict(raw, "gemma-3-27b-it")).total + outside_text == 27_432_406_640
