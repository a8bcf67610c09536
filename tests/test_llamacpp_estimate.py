"""The planner's llama.cpp memory against the published llama.cpp records (results/cpu/): the buffers
llama.cpp allocated at each run's context, within 2% of what `bench plan` says for the same file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.records.store import iter_records
from bench.verdicts.evidence import is_llamacpp_on_cpu, llamacpp_held_bytes
from tests.helpers.paths import ROOT


def published_llamacpp_runs():
    return [r for r in iter_records(ROOT / "results" / "cpu") if is_llamacpp_on_cpu(r) and r.status == "ok"]


def test_there_are_published_runs_to_check():
    assert {r.model.id for r in published_llamacpp_runs()} >= {"mistral-3b", "mistral-3-small", "mistral-small-22b",
                                                                "qwen3-8b", "gemma-3-4b"}
    # Gemma 3 at two contexts: its sliding layers' cache is the same size at both.
    gemma = {r.details["engine"]["n_ctx"] for r in published_llamacpp_runs() if r.model.id == "gemma-3-4b"}
    assert {4096, 32768} <= gemma


@pytest.mark.parametrize("run", published_llamacpp_runs(), ids=lambda r: r.id)
def test_plan_matches_llamacpps_buffers(registry, run):
    engine = run.details["engine"]
    held = sum(llamacpp_held_bytes(run).values())
    plan = make_plan(PlanRequest(Subject.from_spec(registry.model(run.model.id)), quant=engine["weights_format"],
                                 context=engine["n_ctx"]))["memory"]
    assert plan["weights_bytes"] == pytest.approx(engine["model_buffer_bytes"], rel=0.005)
    assert plan["kv_cache_bytes"] == engine["kv_buffer_bytes"]
    assert plan["total_bytes"] - plan["overhead_bytes"] == pytest.approx(held, rel=0.02)


@pytest.mark.parametrize("claim_id,word,evidence_class", [
    ("mistral-3b-fits-4gb-kv", "holds", "measured on a CPU with llama.cpp"),
    ("mistral-3b-phone-ram", "holds", "measured on a CPU with llama.cpp"),
    ("mistral-3-small-edge-inference", "fails", "measured on a CPU with llama.cpp"),
    ("mistral-small-22b-fits-24gb", "holds", "llama.cpp buffers measured on a CPU plus the runner's published CUDA overhead"),
    ("mistral-small-22b-runs-llama-cpp", "holds", "llama.cpp loaded the synthetic GGUF"),
])
def test_a_fresh_checkouts_records_decide_the_on_device_and_local_runner_claims(registry, claim_id, word,
                                                                                 evidence_class):
    from bench.verdicts.decide import all_verdicts

    verdicts = {v.claim_id: v for v in all_verdicts(registry, published_llamacpp_runs())}
    assert verdicts[claim_id].verdict == word and verdicts[claim_id].reason.startswith(evidence_class)


# Tiny shapes of the families llama.cpp gives a sliding-window cache (gemma3: every sixth layer global;
# gpt-oss: every other), a latent cache (deepseek) and a plain one (qwen3), loaded by llama.cpp through bench's
# backend.
SWA_CASES = {
    "gemma3": dict(model_type="gemma3_text", hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=64, intermediate_size=768, vocab_size=1024,
                   max_position_embeddings=4096, sliding_window=128),
    "gpt-oss": dict(model_type="gpt_oss", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=64, intermediate_size=256, num_local_experts=4,
                    num_experts_per_tok=2, vocab_size=1024, max_position_embeddings=4096, sliding_window=128),
    # Multi-head latent attention: one latent of kv_lora_rank plus the RoPE key per token and layer, K only.
    "deepseek3": dict(model_type="deepseek_v3", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=4, intermediate_size=512, moe_intermediate_size=256, n_routed_experts=4,
                      n_shared_experts=2, num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=256,
                      kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64, vocab_size=1024,
                      max_position_embeddings=4096),
    "qwen3": dict(model_type="qwen3", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=64, intermediate_size=512, vocab_size=1024,
                  max_position_embeddings=4096),
}
LOAD_AND_GENERATE = """
import json, os, sys, tempfile
from pathlib import Path
os.environ["BENCH_LLAMACPP_REPACK"] = "0"
from bench.backends.base import EngineSettings
from bench.backends.llamacpp import LlamaCppBackend
from bench.config.hfconfig import from_hf_dict
from bench.weights.synthetic_gguf import fill_random, quantize, write_f16_skeleton
cfg, n_ctx = from_hf_dict(json.loads(sys.argv[1]), "case"), int(sys.argv[2])
work = Path(tempfile.mkdtemp())
write_f16_skeleton(cfg, work / "f16.gguf", "case")
quantize(work / "f16.gguf", work / "q.gguf", "q4_k_m")
fill_random(work / "q.gguf")
backend = LlamaCppBackend(EngineSettings(model_path=str(work / "q.gguf"), device="cpu", max_model_len=n_ctx))
backend.load()
generated = backend.generate([[5, 6, 7, 8] * 40], 4)[0].output_tokens
info = backend.engine_info()
print(json.dumps({"generated": generated, "kv": info["kv_buffer_bytes"], "caches": info["kv_caches"],
                  "model": info["model_buffer_bytes"]}))
"""


@pytest.mark.parametrize("case", list(SWA_CASES))
def test_llamacpps_kv_cache_is_the_planners_for_each_family(case):
    """The planner's llama.cpp KV rules (sliding layers keep n_swa + n_ubatch cells, padded to 256; MLA caches
    the latent) against the KV buffer llama.cpp allocates for a synthetic GGUF of the family, which it then
    generates from."""
    pytest.importorskip("llama_cpp")
    from bench.config.hfconfig import from_hf_dict
    from bench.estimate.gguf import gguf_weight_bytes
    from bench.estimate.memory import kv_cache_bytes

    n_ctx = 2048
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_GENERATE, json.dumps(SWA_CASES[case]), str(n_ctx)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    cfg = from_hf_dict(SWA_CASES[case], case)
    assert run["generated"] == 4
    assert run["kv"] == kv_cache_bytes(cfg, n_ctx, engine="llama.cpp")
    sliding = cfg.attention_layer_types().count("sliding_attention")
    if sliding:  # the window (128) plus one 512-token micro-batch, padded to 256: 768 cells, not 2048
        assert {"cells": 768, "layers": sliding} in run["caches"]
    assert run["model"] == pytest.approx(gguf_weight_bytes(cfg, "q4_k_m"), rel=0.01)


# One tiny shape of each family bench counted in HF form only (tests/test_gguf_sizes.py's quantizer cases), written,
# quantized by llama.cpp's quantizer and loaded by llama.cpp through bench's backend, one type after the other; and
# gpt-oss in MXFP4_MOE, the type its GGUFs are published in (experts MXFP4, the rest Q8_0).
FAMILY_CASES = {"phi3-fused-qkv": ("q4_k_m", "q8_0"), "olmo2-post-norms": ("q4_k_m", "q8_0"),
                "granite-tied": ("q4_k_m", "q8_0"), "qwen2moe-shared-expert": ("q4_k_m", "q8_0"),
                "gptoss-sinks-expert-biases": ("mxfp4_moe",)}
FILE_AND_BUFFERS = """
import json, os, sys, tempfile
from pathlib import Path
os.environ["BENCH_LLAMACPP_REPACK"] = "0"
import gguf
from bench.backends.base import EngineSettings
from bench.backends.llamacpp import LlamaCppBackend
from bench.config.hfconfig import from_hf_dict
from bench.weights.synthetic_gguf import fill_random, quantize, write_f16_skeleton
cfg, n_ctx = from_hf_dict(json.loads(sys.argv[1]), "case"), int(sys.argv[2])
work = Path(tempfile.mkdtemp())
write_f16_skeleton(cfg, work / "f16.gguf", "case")
for quant in json.loads(sys.argv[3]):
    path = work / (quant + ".gguf")
    quantize(work / "f16.gguf", path, quant)
    fill_random(path)
    data_start = min(int(t.data_offset) for t in gguf.GGUFReader(path).tensors)
    backend = LlamaCppBackend(EngineSettings(model_path=str(path), device="cpu", max_model_len=n_ctx))
    backend.load()
    generated = backend.generate([[5, 6, 7, 8] * 10], 4)[0].output_tokens
    info = backend.engine_info()
    backend.close()
    print(json.dumps({"quant": quant, "generated": generated, "data_bytes": path.stat().st_size - data_start,
                      "tensor_bytes": info["model_tensor_bytes"], "buffer": info["model_buffer_bytes"],
                      "kv": info["kv_buffer_bytes"], "format": info["weights_format"]}))
"""


@pytest.mark.parametrize("case", FAMILY_CASES)
def test_llamacpp_loads_each_family_at_benchs_bytes(case):
    """bench's layout of phi3, olmo2, granite, qwen2moe and gpt-oss at MXFP4_MOE against llama.cpp itself: the
    tensor data of the file the quantizer writes is bench's byte count to the byte, llama.cpp's own sum of its
    tensors (llama_model_size) is bench's, its mapped model buffer is bench's to the precision of its log (two
    decimals of a MiB), its KV buffer is the planner's, and it generates from the file."""
    pytest.importorskip("llama_cpp")
    from bench.config.hfconfig import from_hf_dict
    from bench.estimate.gguf import gguf_tensors, tensor_data_bytes
    from bench.estimate.memory import kv_cache_bytes
    from tests.test_gguf_sizes import QUANTIZER_CASES

    quants, n_ctx = list(FAMILY_CASES[case]), 1024
    proc = subprocess.run([sys.executable, "-c", FILE_AND_BUFFERS, json.dumps(QUANTIZER_CASES[case]), str(n_ctx),
                           json.dumps(quants)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    assert [run["quant"] for run in runs] == quants
    cfg = from_hf_dict(QUANTIZER_CASES[case], case)
    for run in runs:
        tensors = gguf_tensors(cfg, run["quant"])
        assert run["format"] == run["quant"] and run["generated"] == 4
        assert run["data_bytes"] == tensor_data_bytes(tensors)
        assert run["tensor_bytes"] == sum(t.nbytes for t in tensors)
        assert abs(run["buffer"] - tensor_data_bytes(tensors)) <= 0.005 * 2**20
        assert run["kv"] == kv_cache_bytes(cfg, n_ctx, engine="llama.cpp")
