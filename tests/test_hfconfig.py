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
    # 13 sliding layers hold 4096 tokens, 13 global layers all 8192.
    assert plan["memory"]["kv_cache_bytes"] == 2 * 4 * 256 * 2 * (13 * 4096 + 13 * 8192)


def test_unsupported_architecture_lists_supported(run_bench, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gpt2", "n_embd": 768}))
    proc = run_bench("plan", "--config", str(path))
    assert proc.returncode == 2
    assert "'gpt2' is not supported" in proc.stderr and "llama" in proc.stderr and "mixtral" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_config_with_missing_field_names_it(run_bench, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    proc = run_bench("plan", "--config", str(path))
    assert proc.returncode == 2 and "num_hidden_layers: Field required" in proc.stderr
