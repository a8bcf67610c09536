"""Vision towers and projectors counted from config.json, against what transformers builds on the meta device."""

from __future__ import annotations

import json
from functools import cache

import pytest

from bench.config.hfconfig import WRAPPER_MODEL_TYPES
from bench.errors import UserError
from bench.estimate.plan import Subject
from bench.estimate.vision import VISION_COUNTERS, count_vision
from tests.helpers.paths import ROOT

CONFIGS = ROOT / "tests" / "configs"
REAL = ["Mistral-Small-3.1-24B-Instruct-2503", "Llama-4-Scout-17B-16E-Instruct", "gemma-3-4b-it", "gemma-3-27b-it"]

TINY_TEXT = {
    "mistral3": {"model_type": "mistral", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 96, "vocab_size": 128},
    "llama4": {"model_type": "llama4_text", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
               "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 96, "intermediate_size_mlp": 128,
               "vocab_size": 128, "num_local_experts": 2},
    "gemma3": {"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
               "num_key_value_heads": 1, "head_dim": 32, "intermediate_size": 96, "vocab_size": 128},
}
# Shapes that exercise every branch of each counter: biases, several feature layers, a wider merge, the
# SigLIP pooling head, non-square adapters, and a config with no vision_config (the class's own default).
TINY = {
    "mistral3-bias": {"model_type": "mistral3", "multimodal_projector_bias": True, "spatial_merge_size": 3,
                      "vision_feature_layer": [-1, -3],
                      "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                                        "num_attention_heads": 2, "patch_size": 4, "image_size": 32}},
    "mistral3-defaults": {"model_type": "mistral3", "vision_config": {"num_hidden_layers": 1}},
    "mistral3-no-vision-config": {"model_type": "mistral3"},
    "llama4": {"model_type": "llama4",
               "vision_config": {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
                                 "num_attention_heads": 2, "image_size": 56, "patch_size": 7, "num_channels": 4,
                                 "projector_input_dim": 48, "projector_output_dim": 48, "vision_output_dim": 48}},
    "llama4-defaults": {"model_type": "llama4", "vision_config": {"num_hidden_layers": 1}},
    "llama4-no-vision-config": {"model_type": "llama4"},
    "gemma3-no-vision-config": {"model_type": "gemma3", "mm_tokens_per_image": 49},
    "gemma3-head": {"model_type": "gemma3",
                    "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                                      "num_attention_heads": 2, "image_size": 64, "patch_size": 8,
                                      "vision_use_head": True}},
    "gemma3-no-head": {"model_type": "gemma3", "mm_tokens_per_image": 16,
                       "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
                                         "num_attention_heads": 2, "image_size": 64, "patch_size": 8,
                                         "vision_use_head": False}},
}


def real_config(name: str) -> dict:
    raw = json.loads((CONFIGS / f"{name}.json").read_text())
    raw.pop("_source")
    return raw


def transformers_parts(raw: dict) -> dict[str, int]:
    """Parameters transformers builds for a config.json, split into vision tower, projector and the rest."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    text = dict(raw.get("text_config") or {})
    if "attn_temperature_tuning" in text:  # Scout's config.json says 4; transformers 5 types it bool (no shape)
        text["attn_temperature_tuning"] = bool(text["attn_temperature_tuning"])
    top = {**raw, **({"text_config": text} if text else {})}
    if raw.get("model_type") == "mistral3":
        # Mistral Small 3.1's config.json names no top-level tie_word_embeddings; transformers 5 then defaults it to
        # true, while the checkpoint stores lm_head apart (23.57B text, as Mistral Small 3's published count).
        top.setdefault("tie_word_embeddings", text.get("tie_word_embeddings", False))
    config = transformers.AutoConfig.for_model(**top)
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(config)
    parts = {"tower": 0, "projector": 0, "text": 0}
    for name, p in model.named_parameters():
        path = name.split(".")
        if "multi_modal_projector" in path:
            parts["projector"] += p.numel()
        elif "vision_tower" in path or "vision_model" in path:
            parts["tower"] += p.numel()
        else:
            assert "language_model" in path or path[0] == "lm_head", name  # nothing else is left uncounted
            parts["text"] += p.numel()
    return parts


@cache
def real_parts(name: str) -> dict[str, int]:
    """Built once per session: Scout's 108B parameters take seconds even on the meta device."""
    return transformers_parts(real_config(name))


@pytest.mark.parametrize("name", REAL)
def test_real_configs_count_as_transformers_builds_them(name):
    raw = real_config(name)
    built = real_parts(name)
    counted = count_vision(raw, name)
    assert (counted.tower, counted.projector) == (built["tower"], built["projector"])
    assert built["tower"] > 0 and built["projector"] > 0


@pytest.mark.parametrize("name", REAL)
def test_a_subject_from_a_real_config_totals_what_transformers_builds(name):
    raw = real_config(name)
    built = real_parts(name)
    subject = Subject.from_hf_config(raw, name)
    assert subject.params.total == sum(built.values())
    assert subject.params.text == built["text"]
    assert subject.extra_params == built["tower"] + built["projector"]


@pytest.mark.parametrize("name", TINY)
def test_tiny_configs_count_as_transformers_builds_them(name):
    raw = {**TINY[name], "text_config": TINY_TEXT[TINY[name]["model_type"]]}
    built = transformers_parts(raw)
    counted = count_vision(raw, name)
    assert (counted.tower, counted.projector) == (built["tower"], built["projector"])


def test_published_vision_sizes():
    # Model cards: Mistral Small 3.1 adds a ~0.4B vision encoder; Scout's 109B total less its 108B text model.
    assert count_vision(real_config("Mistral-Small-3.1-24B-Instruct-2503"), "m").total == 438_958_080
    assert count_vision(real_config("Llama-4-Scout-17B-16E-Instruct"), "s").total == 871_932_416
    small, large = (count_vision(real_config(name), name) for name in ("gemma-3-4b-it", "gemma-3-27b-it"))
    assert small.tower == large.tower == 416_866_032  # one SigLIP tower for every size; the projector follows H
    assert (small.projector, large.projector) == (1152 * 2560 + 1152, 1152 * 5376 + 1152)


def test_every_registry_model_with_a_stored_config_carries_its_counted_tower(registry):
    checked = []
    for spec in registry.models.values():
        name = (spec.repo or "").rpartition("/")[2]
        if (CONFIGS / f"{name}.json").is_file():
            vision = count_vision(json.loads((CONFIGS / f"{name}.json").read_text()), name)
            assert spec.extra_params == (vision.total if vision else 0), spec.id
            checked.append(spec.id)
    assert "llama-4-scout" in checked


def test_registry_extra_params_match_the_counted_towers(registry):
    scout = count_vision(real_config("Llama-4-Scout-17B-16E-Instruct"), "scout").total
    # Maverick's vision_config equals Scout's and its text hidden size is 5120 too (model-facts 1h: TensorRT-LLM's
    # LLAMA_4_MAVERICK_TWO_LAYER_CONFIG).
    assert registry.model("llama-4-scout").extra_params == scout
    assert registry.model("llama-4-maverick").extra_params == scout
    # Ministral 3 3B: the same Pixtral tower and projector fields as Mistral Small 3.1 (model-facts 1a: mlc-llm's
    # ministral3 preset), projected into a 3072-wide text model.
    ministral = real_config("Mistral-Small-3.1-24B-Instruct-2503")
    ministral["text_config"] = {**ministral["text_config"], "hidden_size": 3072}
    assert registry.model("mistral-3b").extra_params == count_vision(ministral, "ministral").total


def test_text_only_leaves_the_tower_out_and_says_how_much():
    raw = real_config("Mistral-Small-3.1-24B-Instruct-2503")
    full, text = Subject.from_hf_config(raw, "m"), Subject.from_hf_config(raw, "m", text_only=True)
    assert text.extra_params == 0 and text.dropped_params == full.extra_params == 438_958_080
    assert full.params.total - text.params.total == 438_958_080
    assert text.params.text == full.params.text


def test_registry_subject_text_only(registry):
    spec = registry.model("llama-4-scout")
    subject = Subject.from_spec(spec, text_only=True)
    assert (subject.extra_params, subject.dropped_params) == (0, spec.extra_params)


def test_a_text_model_has_no_vision():
    assert count_vision({"model_type": "mistral", "hidden_size": 64}, "x") is None
    assert count_vision({"model_type": ["mistral3"]}, "x") is None


def test_every_multimodal_wrapper_the_parser_accepts_has_a_vision_counter():
    # A wrapper whose tower went uncounted would silently plan too little memory.
    assert set(WRAPPER_MODEL_TYPES) <= set(VISION_COUNTERS)


@pytest.mark.parametrize("change,message", [
    ({"vision_config": [1]}, "cfg.json: vision_config must be an object, not list"),
    ({"vision_config": {"hidden_size": "1024"}},
     "cfg.json: vision_config.hidden_size: must be a whole number from 1 to 1,000,000, not '1024'"),
    ({"vision_config": {"hidden_size": 10**9}}, "cfg.json: vision_config.hidden_size: must be a whole number"),
    ({"vision_config": {"num_hidden_layers": True}}, "cfg.json: vision_config.num_hidden_layers: must be"),
    ({"multimodal_projector_bias": "no"}, "cfg.json: multimodal_projector_bias: must be true or false, not 'no'"),
    ({"spatial_merge_size": 0}, "cfg.json: spatial_merge_size: must be a whole number"),
    ({"vision_feature_layer": "last"}, "cfg.json: vision_feature_layer: must be a layer index"),
    ({"text_config": None}, "cfg.json: text_config must be an object, not NoneType"),
])
def test_bad_fields_are_one_clear_error(change, message):
    raw = {**real_config("Mistral-Small-3.1-24B-Instruct-2503"), **change}
    with pytest.raises(UserError) as err:
        count_vision(raw, "cfg.json")
    assert str(err.value).startswith(message)


def test_a_patch_larger_than_the_image_is_refused():
    raw = real_config("gemma-3-4b-it")
    raw["vision_config"] = {**raw["vision_config"], "patch_size": 1000}
    with pytest.raises(UserError, match="patch_size 1000 exceeds image_size 896"):
        count_vision(raw, "cfg.json")


def test_a_plan_says_whether_the_vision_tower_is_counted(registry):
    from bench.estimate.plan import PlanRequest, make_plan

    raw = real_config("Mistral-Small-3.1-24B-Instruct-2503")
    full = make_plan(PlanRequest(Subject.from_hf_config(raw, "m")))
    text = make_plan(PlanRequest(Subject.from_hf_config(raw, "m", text_only=True)))
    assert full["params"]["vision"] == {"params": 438_958_080, "tower": 403_305_472, "projector": 35_652_608,
                                        "counted": True}
    assert full["params"]["by_part"]["vision"] == 438_958_080 and text["params"]["by_part"]["vision"] == 0
    assert text["params"]["vision"]["counted"] is False
    # 16-bit weights: the tower's two bytes per parameter are the whole difference.
    assert full["memory"]["weights_bytes"] - text["memory"]["weights_bytes"] == 2 * 438_958_080
    assert any("438,958,080 parameters" in n and "counted" in n for n in full["notes"])
    assert any(n.startswith("--text-only") for n in text["notes"])
    gguf = make_plan(PlanRequest(Subject.from_hf_config(raw, "m"), quant="q4_k_m"))
    assert gguf["params"]["vision"]["counted"] is False
    assert any("separate mmproj file" in n for n in gguf["notes"])
    plain = make_plan(PlanRequest(Subject.from_spec(registry.model("mistral-3-small"))))
    assert plain["params"]["vision"] is None and not any("vision" in n for n in plain["notes"])


def test_cli_text_only_for_a_config_and_a_registry_model(run_bench):
    path = str(CONFIGS / "Llama-4-Scout-17B-16E-Instruct.json")
    full = json.loads(run_bench("plan", "--config", path, "--json").stdout)
    text = json.loads(run_bench("plan", "--config", path, "--json", "--text-only").stdout)
    assert full["params"]["total"] - text["params"]["total"] == 871_932_416
    registry_text = json.loads(run_bench("plan", "llama-4-scout", "--json", "--text-only").stdout)
    assert registry_text["params"]["total"] == text["params"]["total"]
    shown = run_bench("plan", "llama-4-scout", "--text-only").stdout
    assert "vision tower and projector 0.87B, left out of the weights" in shown


def test_cli_refuses_a_bad_vision_config_in_one_line(run_bench, tmp_path):
    raw = json.loads((CONFIGS / "gemma-3-4b-it.json").read_text())
    raw["vision_config"]["num_hidden_layers"] = -1
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    result = run_bench("plan", "--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: vision_config.num_hidden_layers: must be a whole number from 1 to 1,000, not -1"]
