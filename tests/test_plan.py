"""`bench plan`: the JSON contract, and the arithmetic on known cases."""

from __future__ import annotations

import json

import pytest

from bench.errors import UserError
from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.estimate.quant import FORMATS, by_precision, weight_format
from bench.report.plan_text import engine_formats

GIB = 2**30


def plan_for(registry, model, gpu=None, **kw):
    return make_plan(PlanRequest(Subject.from_spec(registry.model(model)),
                                 registry.gpu(gpu) if gpu else None, **kw))


def test_json_has_the_contract_fields(run_bench):
    proc = run_bench("plan", "mistral-3-small", "--gpu", "4090", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    for key in ("model", "gpu", "quant", "context", "batch", "params", "memory", "fits",
                "max_context_that_fits", "roofline"):
        assert key in plan
    assert set(plan["params"]) >= {"total", "active"}
    assert set(plan["memory"]) >= {"weights_bytes", "kv_cache_bytes", "kv_bytes_per_token", "activations_bytes",
                                   "overhead_bytes", "total_bytes", "budget_bytes"}
    assert set(plan["roofline"]) >= {"decode_tokens_per_s", "prefill_tokens_per_s"}
    assert plan["gpu"] == "rtx-4090" and plan["quant"] == "bf16" and plan["context"] == 4096


def test_memory_parts_add_up(registry):
    plan = plan_for(registry, "mixtral-8x22b", "h100-80gb", quant="fp8", context=8192, batch=4)
    m = plan["memory"]
    assert m["total_bytes"] == (m["weights_bytes"] + m["kv_cache_bytes"] + m["activations_bytes"]
                                + m["logits_bytes"] + m["overhead_bytes"])
    assert m["kv_cache_bytes"] == 4 * 8192 * m["kv_bytes_per_token"]


def test_mistral_small_24b_fits_a_4090_only_quantised(registry):
    bf16 = plan_for(registry, "mistral-3-small", "rtx-4090", quant="bf16")
    assert bf16["fits"] is False
    assert bf16["memory"]["weights_bytes"] == pytest.approx(23_572_403_200 * 2, rel=1e-6)
    nf4 = plan_for(registry, "mistral-3-small", "rtx-4090", quant="nf4")
    assert nf4["fits"] is True
    # nf4 packs linear layers at 4.5 bits; embeddings and lm_head (1.34B) stay 16-bit.
    expected = (23_572_403_200 - 1_342_177_280 - 40 * 2 * 5120 - 5120) * 4.5 / 8 + (
        1_342_177_280 + 40 * 2 * 5120 + 5120) * 2
    assert nf4["memory"]["weights_bytes"] == pytest.approx(expected, abs=1)
    # fp8 keeps embeddings and lm_head in 16 bits: 24.9 GB of weights alone, too much with the runtime.
    assert plan_for(registry, "mistral-3-small", "rtx-4090", quant="fp8")["fits"] is False
    # GGUF types count too: q6_k (6.56 bits/weight, 18.0 GiB of tensors) leaves 3.98 GiB on the card.
    assert bf16["highest_precision_quant_that_fits"] == "q6_k"
    assert bf16["fastest_quant_that_fits"] == "int4"  # 4.16 bits/weight: fewest bytes per decoded token


def test_max_context_is_the_edge_of_fitting(registry):
    plan = plan_for(registry, "mistral-3-small", "rtx-4090", quant="nf4", batch=4)
    edge = plan["max_context_that_fits"]
    assert 0 < edge < 32768
    assert plan_for(registry, "mistral-3-small", "rtx-4090", quant="nf4", batch=4, context=edge)["fits"] is True
    assert plan_for(registry, "mistral-3-small", "rtx-4090", quant="nf4", batch=4, context=edge + 1)["fits"] is False
    # One sequence fits the model's whole 32k window.
    assert plan_for(registry, "mistral-3-small", "rtx-4090", quant="nf4")["max_context_that_fits"] == 32768


def test_maverick_does_not_fit_a_24gb_card_at_any_quant(registry):
    for quant in ("bf16", "fp8", "nf4", "int4"):
        plan = plan_for(registry, "llama-4-maverick", "rtx-4090", quant=quant)
        assert plan["fits"] is False
        assert plan["memory"]["lower_bound_bytes"] > 190 * GIB  # int4: 213.8 GB of weights
        assert plan["max_context_that_fits"] == 0
    assert plan_for(registry, "llama-4-maverick", "rtx-4090")["fastest_quant_that_fits"] is None


def test_moe_decode_reads_active_weights_only(registry):
    mixtral = plan_for(registry, "mixtral-8x22b", "h100-80gb", quant="fp8", context=1)
    # bytes read per token: about 39B active params at ~1 byte, minus the embedding lookup
    bytes_per_token = 3.35e12 / mixtral["roofline"]["decode_tokens_per_s"]
    assert 38e9 < bytes_per_token < 40e9


def test_two_cards_double_budget_and_bandwidth(registry):
    one = plan_for(registry, "mistral-medium-3", "a100-80gb", quant="bf16")
    two = plan_for(registry, "mistral-medium-3", "2x-a100-80gb", quant="bf16")
    assert two["memory"]["budget_bytes"] == 2 * one["memory"]["budget_bytes"]
    assert two["roofline"]["decode_tokens_per_s"] == pytest.approx(2 * one["roofline"]["decode_tokens_per_s"])
    assert one["fits"] is False and two["fits"] is True
    assert two["proxy"]


def test_finetune_plan_counts_adapter_state(registry):
    plan = plan_for(registry, "mistral-3-small", "rtx-4090", recipe=registry.recipe("qlora-sft"))
    mem = plan["memory"]
    # rank 16 on q,k,v,o,gate,up,down of 40 layers
    per_layer = 16 * ((5120 + 4096) + 2 * (5120 + 1024) + (4096 + 5120) + 3 * (5120 + 32768))
    assert mem["trainable_params"] == 40 * per_layer
    # bf16 weights and grads (trl casts adapters over a 4-bit base down to bf16); paged 8-bit Adam's
    # state (two uint8 moments and an fp32 absmax per 256) lives outside torch's allocator
    assert mem["trainable_bytes"] == 40 * per_layer * (2 + 2)
    assert mem["outside_allocator_bytes"] == int(40 * per_layer * 2 * (1 + 4 / 256))
    assert plan["quant"] == "nf4" and plan["context"] == 2048
    assert plan["fits"] is True
    assert plan["roofline"]["train_tokens_per_s"] > 0


def test_dpo_doubles_tokens_and_reward_drops_vocab_logits(registry):
    dpo = plan_for(registry, "tiny-llama", "rtx-4090", recipe=registry.recipe("dpo"))
    reward = plan_for(registry, "tiny-llama", "rtx-4090", recipe=registry.recipe("reward"))
    assert dpo["memory"]["tokens_per_step"] == 2 * 1024
    assert reward["memory"]["logits_bytes"] == 0 and dpo["memory"]["logits_bytes"] > 0


def test_quant_bits_include_scales():
    assert weight_format("nf4").bits_per_weight == 4.5
    assert weight_format("nf4", double_quant=True).bits_per_weight == pytest.approx(4.127, abs=1e-3)
    assert weight_format("int4").bits_per_weight == pytest.approx(4.156, abs=1e-3)


def test_recipe_and_quant_must_agree(registry):
    with pytest.raises(UserError, match="conflicts"):
        plan_for(registry, "mistral-3-small", "rtx-4090", quant="bf16", recipe=registry.recipe("qlora-sft"))


def test_no_gpu_lists_cards_that_fit(run_bench):
    plan = json.loads(run_bench("plan", "mistral-3b", "--quant", "nf4", "--json").stdout)
    assert plan["gpu"] is None and plan["fits"] is None
    assert plan["fits_on"]["rtx-4090"] is True and plan["fits_on"]["edge-4gb"] in (True, False)


def test_bitsandbytes_leaves_fused_moe_experts_in_16_bits(registry):
    scout = registry.model("llama-4-scout")
    nf4 = plan_for(registry, "llama-4-scout", "h100-80gb", quant="nf4")
    int4 = plan_for(registry, "llama-4-scout", "h100-80gb", quant="int4")
    experts = nf4["params"]["by_part"]["experts"]
    assert experts == 48 * 16 * 3 * 5120 * 8192
    # nf4 (bitsandbytes) keeps the fused experts at 2 bytes; int4 (AWQ/GPTQ) packs them.
    assert nf4["memory"]["weights_bytes"] > 2 * experts
    assert int4["memory"]["weights_bytes"] < 0.6 * scout.published_params["total"]
    assert nf4["fits"] is False and int4["fits"] is True


def test_transformers_still_stores_moe_experts_as_fused_parameters(registry):
    """The assumption behind the test above: if transformers turns experts back into nn.Linear
    modules, bitsandbytes would pack them and the estimator must change."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    for model_id in ("tiny-mixtral", "tiny-llama4"):
        fields = registry.model(model_id).architecture.model_dump(exclude_none=True)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**fields))
        linear_names = {name for name, m in model.named_modules() if type(m) is torch.nn.Linear}
        expert_params = [n for n, _ in model.named_parameters() if ".experts." in n]
        assert expert_params, model_id
        assert not any(n.rsplit(".", 1)[0] in linear_names for n in expert_params), model_id


def test_observed_device_names_find_their_profile(registry):
    assert registry.gpu_for_device("NVIDIA H100 80GB HBM3").id == "h100-80gb"
    assert registry.gpu_for_device("nvidia geforce rtx 4090").id == "rtx-4090"
    assert registry.gpu_for_device("AMD EPYC 7B13") is None


def test_quant_advice_never_contradicts_the_plan_above_it(registry):
    """Issue 20: a q6_k plan that fits was told "highest precision that fits: nf4", and an edge-4gb q4_k_m plan
    that fits was told "fastest quant that fits: none"."""
    q6_k = plan_for(registry, "mistral-3-small", "rtx-4090", quant="q6_k")
    assert q6_k["fits"] is True
    assert q6_k["highest_precision_quant_that_fits"] == "q6_k"
    assert q6_k["fastest_quant_that_fits"] == "int4"
    edge = plan_for(registry, "mistral-3b", "edge-4gb", quant="q4_k_m")
    assert edge["fits"] is True and edge["memory"]["total_bytes"] == pytest.approx(2.98 * GIB, abs=0.01 * GIB)
    assert edge["highest_precision_quant_that_fits"] == "q6_k"
    assert edge["fastest_quant_that_fits"] == "q4_0"


@pytest.mark.parametrize("model", ["mistral-3b", "mistral-3-small", "llama-4-scout"])
def test_a_plan_that_fits_gets_advice_at_least_as_precise_and_as_fast(registry, model):
    subject = Subject.from_spec(registry.model(model))
    for gpu in ("edge-4gb", "rtx-4090", "h100-80gb"):
        for quant in subject.quants + tuple(q for q in FORMATS if FORMATS[q].gguf):
            plan = plan_for(registry, model, gpu, quant=quant)
            if not plan["fits"]:
                continue
            order = by_precision([quant, plan["highest_precision_quant_that_fits"]])
            assert order[0] == plan["highest_precision_quant_that_fits"], (gpu, quant)
            fastest = plan_for(registry, model, gpu, quant=plan["fastest_quant_that_fits"])
            assert fastest["roofline"]["decode_tokens_per_s"] >= plan["roofline"]["decode_tokens_per_s"], (gpu, quant)


def test_precision_order_is_bits_per_weight_then_the_format_table():
    assert by_precision(FORMATS) == ["bf16", "fp16", "f16", "q8_0", "fp8", "int8", "q6_k", "q5_k_m", "q5_k_s",
                                     "nf4", "q4_k_m", "q4_k_s", "q4_0", "mxfp4_moe", "int4"]


def test_no_quant_plan_answers_what_fits_per_engine(registry):
    """Asked whether Mistral Small fits a 4090: the default breakdown (bf16) does not, and each engine's most precise
    fitting format says what does."""
    plan = make_plan(PlanRequest(Subject.from_spec(registry.model("mistral-3-small")), registry.gpu("4090")),
                     engine_formats())
    assert plan["quant"] == "bf16" and plan["fits"] is False
    rows = {r["engine"]: r for r in plan["fits_by_engine"]}
    assert list(rows) == ["vllm", "transformers", "llama.cpp"]
    # vLLM: bf16 and fp8 (24.9 GB of weights) do not fit; the registry names an AWQ repository for int4.
    assert rows["vllm"]["considered"] == ["bf16", "fp8", "int4"]
    assert (rows["vllm"]["quant"], rows["vllm"]["max_context_that_fits"]) == ("int4", 32768)
    assert rows["vllm"]["headroom_bytes"] == pytest.approx(8.20 * GIB, abs=0.01 * GIB)
    assert (rows["transformers"]["quant"], rows["transformers"]["max_context_that_fits"]) == ("nf4", 32768)
    assert rows["transformers"]["headroom_bytes"] == pytest.approx(7.31 * GIB, abs=0.01 * GIB)
    # llama.cpp: every GGUF type is on offer (its quantizer writes any); q8_0 (23.4 GiB of tensors) does not fit.
    assert rows["llama.cpp"]["considered"] == ["f16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q4_0"]
    # Its largest context is a whole number of 256-cell blocks: llama.cpp pads its cache to 256 cells.
    assert (rows["llama.cpp"]["quant"], rows["llama.cpp"]["max_context_that_fits"]) == ("q6_k", 29952)
    assert rows["llama.cpp"]["headroom_bytes"] == pytest.approx(3.98 * GIB, abs=0.01 * GIB)
    assert all(r["fits"] for r in rows.values())
    assert rows["vllm"]["decode_tokens_per_s"] == pytest.approx(plan_for(
        registry, "mistral-3-small", "rtx-4090", quant="int4")["roofline"]["decode_tokens_per_s"])


def test_int4_needs_a_named_repository_to_be_advised(registry):
    """Scout has no AWQ/GPTQ repository in the registry: vLLM's row has nothing that fits an H100, the notes
    say why, and --quant int4 still plans it."""
    plan = make_plan(PlanRequest(Subject.from_spec(registry.model("llama-4-scout")), registry.gpu("h100-80gb")),
                     engine_formats())
    rows = {r["engine"]: r for r in plan["fits_by_engine"]}
    assert rows["vllm"] == {"engine": "vllm", "quant": None, "fits": False, "considered": ["bf16", "fp8"],
                            "max_context_that_fits": 0, "headroom_bytes": None, "decode_tokens_per_s": None}
    assert rows["llama.cpp"]["quant"] == "q5_k_m"
    assert any(n.startswith("int4 is left out of the advice") for n in plan["notes"])
    assert plan_for(registry, "llama-4-scout", "h100-80gb", quant="int4")["fits"] is True


def test_claim_plans_skip_the_per_engine_answer(registry):
    """Per-claim plans stay quick: only `bench plan MODEL --gpu G` asks for every engine's answer."""
    assert plan_for(registry, "mistral-3-small", "rtx-4090")["fits_by_engine"] is None


def test_text_answers_what_fits_first_then_the_breakdown(run_bench):
    out = run_bench("plan", "mistral-3-small", "--gpu", "4090").stdout.splitlines()
    assert out[0] == "mistral-3-small on rtx-4090 (23.99 GiB): what fits, inference at context 4,096, batch 1"
    rows = [line.split() for line in out[3:6]]
    assert [r[:5] for r in rows] == [["vllm", "int4", "4.16", "32,768", "8.20"],
                                     ["transformers", "nf4", "4.5", "32,768", "7.31"],
                                     ["llama.cpp", "q6_k", "6.56", "29,952", "3.98"]]
    breakdown = out.index("breakdown of bf16, the model's first listed format (--quant picks another):")
    assert out[breakdown + 1].startswith("mistral-3-small: inference, bf16, context 4096")
    assert "  fastest quant that fits: int4; highest precision that fits: q6_k" in out


def test_text_with_a_quant_keeps_todays_shape_and_prints_the_notes(run_bench):
    out = run_bench("plan", "mistral-3b", "--gpu", "edge-4gb", "--quant", "q4_k_m").stdout
    assert out.startswith("mistral-3b: inference, q4_k_m, context 4096, batch 1, on edge-4gb")
    assert "what fits" not in out
    assert "fits on edge-4gb: needs 2.98 GiB of 4.00 GiB (1.02 GiB to spare)" in out
    assert "fastest quant that fits: q4_0; highest precision that fits: q6_k" in out
    assert "note: a GGUF holds the text model only: llama.cpp keeps the vision tower and projector (420,083,712 " \
        "parameters) in a" in out


def test_json_carries_the_per_engine_answer(run_bench):
    plan = json.loads(run_bench("plan", "mistral-3-small", "--gpu", "4090", "--json").stdout)
    answer = [(r["engine"], r["quant"], r["fits"], r["max_context_that_fits"]) for r in plan["fits_by_engine"]]
    assert answer == [("vllm", "int4", True, 32768), ("transformers", "nf4", True, 32768),
                      ("llama.cpp", "q6_k", True, 29952)]
    assert plan["fits_by_engine"][2]["headroom_bytes"] == 4_270_855_258
