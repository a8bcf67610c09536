"""`bench plan --config`: any config.json of a supported family, one line for the rest."""

from __future__ import annotations

import json

from bench.config.hfconfig import from_hf_dict


def test_wrapper_configs_use_their_text_config():
    raw = {"model_type": "llama4", "text_config": {
        "hidden_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8,
        "intermediate_size": 8192, "intermediate_size_mlp": 16384, "vocab_size": 202048,
        "max_position_embeddings": 10485760, "num_local_experts": 16, "rope_theta": 500000.0}}
    cfg = from_hf_dict(raw, "config.json")
    assert cfg.model_type == "llama4_text" and cfg.head_size == 128
    assert cfg.attention_layer_types().count("full_attention") == 12


def test_unknown_fields_of_a_real_config_are_ignored():
    cfg = from_hf_dict({"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 128,
                        "rope_scaling": None, "torch_dtype": "bfloat16"}, "x")
    assert cfg.kv_heads == 4


def test_plan_from_config_file(run_bench, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "model_type": "gemma2", "hidden_size": 2304, "num_hidden_layers": 26, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "intermediate_size": 9216, "vocab_size": 256000,
        "max_position_embeddings": 8192, "sliding_window": 4096}))
    proc = run_bench("plan", "--config", str(path), "--gpu", "l4", "--context", "8192", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    # Gemma 2 2B: 2,614,341,888 parameters (tied embeddings, four norms per layer).
    assert plan["params"]["total"] == 2_614_341_888
    # vLLM's rules (the plan's default for a 16-bit format): 13 global layers hold all 8192 tokens; 13 sliding
    # layers reserve their window - 1 plus a prefill chunk in flight, capped at the context, plus one 16-token
    # block: 8192 + 16.
    assert plan["memory"]["kv_engine"] == "vllm"
    assert plan["memory"]["kv_cache_bytes"] == 2 * 4 * 256 * 2 * (13 * 8208 + 13 * 8192)


def test_an_unknown_family_without_the_standard_fields_names_what_is_missing(run_bench, tmp_path):
    """A family bench has no arithmetic for is counted on the meta device (tests/test_hub_ids.py) when its config
    has the standard fields the KV cache and activations need; GPT-2's names differ, so it is refused in one
    line that says which are missing."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gpt2", "n_embd": 768}))
    proc = run_bench("plan", "--config", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "model_type 'gpt2' has no arithmetic in bench" in proc.stderr and "lacks hidden_size" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_config_with_missing_field_names_it(run_bench, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    proc = run_bench("plan", "--config", str(path))
    assert proc.returncode == 2 and "num_hidden_layers: Field required" in proc.stderr


def test_gemma3_wrapper_gets_transformers_defaults_for_what_it_leaves_out():
    # gemma-3-4b-it's text_config names four fields; transformers' Gemma3TextConfig supplies the rest.
    raw = {"model_type": "gemma3", "text_config": {"hidden_size": 2560, "intermediate_size": 10240,
                                                   "model_type": "gemma3_text", "num_hidden_layers": 34,
                                                   "sliding_window": 1024}}
    cfg = from_hf_dict(raw, "config.json")
    assert (cfg.model_type, cfg.vocab_size, cfg.num_attention_heads, cfg.kv_heads, cfg.head_size) == \
        ("gemma3_text", 262_208, 8, 4, 256)
    assert cfg.tie_word_embeddings and cfg.max_position_embeddings == 131_072
    # Five sliding layers to one global one: layers 5, 11, 17, 23 and 29 are global.
    types = cfg.attention_layer_types()
    assert [i for i, t in enumerate(types) if t == "full_attention"] == [5, 11, 17, 23, 29]
    assert cfg.kv_window("sliding_attention") == 1024


def test_layer_types_in_the_config_win_over_the_pattern():
    fields = {"model_type": "gemma3_text", "num_hidden_layers": 4, "sliding_window_pattern": 2,
              "layer_types": ["full_attention"] * 4}
    assert from_hf_dict(fields, "x").attention_layer_types() == ["full_attention"] * 4


def test_which_layers_route_to_experts():
    deepseek = from_hf_dict({"model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 6,
                             "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
                             "max_position_embeddings": 128, "first_k_dense_replace": 2}, "x")
    assert deepseek.moe_layer_indices() == {2, 3, 4, 5} and deepseek.routed_experts == 256
    assert deepseek.shared_expert_width == 2048 and deepseek.is_mla
    qwen = from_hf_dict({"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 6,
                         "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
                         "max_position_embeddings": 128, "decoder_sparse_step": 2, "mlp_only_layers": [3]}, "x")
    assert qwen.moe_layer_indices() == {1, 5} and qwen.shared_expert_width == 0 and qwen.expert_width == 768
    dense = from_hf_dict({"model_type": "qwen2_moe", "hidden_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
                          "max_position_embeddings": 128, "num_experts": 0}, "x")
    assert not dense.is_moe and dense.moe_layer_indices() == set()


def test_mla_without_its_latent_shape_names_the_fields(run_bench, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 2,
                                "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
                                "max_position_embeddings": 128, "kv_lora_rank": None}))
    proc = run_bench("plan", "--config", str(path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "kv_lora_rank" in proc.stderr
