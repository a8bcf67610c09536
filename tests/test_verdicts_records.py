"""Verdicts from records: precedence of evidence, conditions the quote did not state, and the
eval comparison rule (win, loss, tie within error, missing evidence), on constructed records."""

from __future__ import annotations

from bench.config.specs import ClaimSource, ClaimSpec
from bench.records.schema import Metric, ModelRef, RunRecord
from bench.verdicts.decide import verdict_for

_COUNTER = iter(range(10_000))


def record(kind="inference", model="mistral-3-small", status="ok", weights="real", target="rtx-4090",
           emulated=False, quant="nf4", metrics=None, recipe=None, started="2026-11-23T10:00:00+00:00"):
    config = ({"scenario": {"engine": {"quant": quant}, "batch": 8, "context": None}} if kind == "inference"
              else {"recipe": recipe or {}} if kind == "finetune" else {})
    return RunRecord(
        schema_version=1, id=f"r{next(_COUNTER)}", kind=kind, status=status,
        error=None if status == "ok" else "CUDA out of memory",
        model=ModelRef(id=model, repo="x/y", revision="main", resolved_revision="a" * 40, weights=weights),
        config=config, hardware={"target": target, "emulated": emulated, "device_name": "NVIDIA H100"},
        software={}, metrics=metrics or {}, started_at=started, duration_s=1.0)


def check(registry, records, **claim):
    spec = ClaimSpec.model_validate({"id": "c", "speaker": "t", "quote": "q", "product": "p", **claim})
    return verdict_for(registry, ClaimSource(source="t.txt", title="t", products=["p"], claims=[spec]), spec,
                       records)


FITS_4090 = dict(subject="mistral-3-small", kind="inference-memory", conditions={"gpu": "rtx-4090"})


def test_no_records_leaves_the_arithmetic_verdict(registry):
    assert check(registry, [], **FITS_4090).verdict == "plausible"


def test_an_ok_run_holds_and_names_the_unstated_quant(registry):
    v = check(registry, [record(metrics={"peak_memory_bytes": Metric(value=20 * 2**30, unit="bytes")})],
              **FITS_4090)
    assert v.verdict == "holds" and v.conditions["quant"] == "nf4"
    assert any("holds at nf4" in u for u in v.conditions["unstated"])
    assert "20.0 GiB" in v.reason


def test_out_of_memory_fails(registry):
    assert check(registry, [record(status="oom")], **FITS_4090).verdict == "fails"


def test_precedence_card_over_cap_over_synthetic(registry):
    synthetic_ok = record(weights="synthetic", started="2026-11-23T12:00:00+00:00")
    capped_oom = record(status="oom", emulated=True)
    native_ok = record(started="2026-11-01T00:00:00+00:00")
    assert check(registry, [synthetic_ok, capped_oom], **FITS_4090).verdict == "fails"
    v = check(registry, [synthetic_ok, capped_oom, native_ok], **FITS_4090)
    assert v.verdict == "holds" and v.evidence["decisive_record"] == native_ok.id
    assert check(registry, [synthetic_ok], **FITS_4090).verdict == "holds"


def test_records_for_another_card_or_a_crash_are_not_evidence(registry):
    other_card = record(target="a100-80gb")
    crashed = record(status="error")
    assert check(registry, [other_card, crashed], **FITS_4090).verdict == "plausible"


def test_a_stated_quant_ignores_runs_at_other_quants(registry):
    claim = dict(FITS_4090, conditions={"gpu": "rtx-4090", "quant": "fp8"})
    assert check(registry, [record(quant="nf4")], **claim).verdict != "holds"


def test_finetune_oom_fails(registry):
    claim = dict(subject="mistral-small-22b", kind="finetune-memory",
                 conditions={"gpu": "rtx-4090", "recipe": "qlora-sft"})
    oom = record(kind="finetune", model="mistral-small-22b", status="oom", emulated=True,
                 recipe={"method": "qlora", "quant": "nf4"})
    assert check(registry, [oom], **claim).verdict == "fails"


def test_speed_needs_the_claimed_card_itself(registry):
    claim = dict(subject="mistral-3-small", kind="speed", conditions={"gpu": "rtx-4090", "quant": "nf4"},
                 threshold={"decode_tokens_per_s": 40})
    fast = {"decode_tokens_per_s": Metric(value=55.0, unit="tokens/s")}
    assert check(registry, [record(metrics=fast, emulated=True)], **claim).verdict == "plausible"
    assert check(registry, [record(metrics=fast)], **claim).verdict == "holds"
    slow = {"decode_tokens_per_s": Metric(value=30.0, unit="tokens/s")}
    assert check(registry, [record(metrics=slow)], **claim).verdict == "fails"


def eval_rec(model, acc, stderr, task="arc_challenge", weights="real", limit=None):
    scores = {task: {"acc": acc, "acc_stderr": stderr}}
    return record(kind="eval", model=model, weights=weights, metrics={
        "scores": Metric(value=scores, unit="score"), "limit": Metric(value=limit, unit="docs"),
        "num_fewshot": Metric(value=0, unit="shots")})


EVAL = dict(subject="mistral-3b", kind="eval", conditions={"tasks": ["arc_challenge"],
                                                           "compare_to": ["mistral-small-22b"]})


def test_eval_win(registry):
    v = check(registry, [eval_rec("mistral-3b", 0.60, 0.01), eval_rec("mistral-small-22b", 0.50, 0.01)], **EVAL)
    assert v.verdict == "holds" and "-> win" in v.reason and len(v.evidence["records"]) == 2


def test_eval_loss(registry):
    v = check(registry, [eval_rec("mistral-3b", 0.40, 0.01), eval_rec("mistral-small-22b", 0.50, 0.01)], **EVAL)
    assert v.verdict == "fails" and "-> loss" in v.reason


def test_eval_tie_within_combined_error_is_not_a_win(registry):
    # 0.52 vs 0.50 with stderr 0.015 each: the gap 0.02 is inside sqrt(2) * 0.015 = 0.0212.
    v = check(registry, [eval_rec("mistral-3b", 0.52, 0.015), eval_rec("mistral-small-22b", 0.50, 0.015)], **EVAL)
    assert v.verdict == "fails" and "-> tie" in v.reason


def test_eval_missing_or_unusable_evidence_is_untested(registry):
    assert check(registry, [eval_rec("mistral-3b", 0.6, 0.01)], **EVAL).verdict == "untested"
    limited = [eval_rec("mistral-3b", 0.6, 0.01, limit=10), eval_rec("mistral-small-22b", 0.5, 0.01)]
    assert check(registry, limited, **EVAL).verdict == "untested"  # --limit runs are not citable
    synthetic = [eval_rec("mistral-3b", 0.6, 0.01, weights="synthetic"), eval_rec("mistral-small-22b", 0.5, 0.01)]
    assert check(registry, synthetic, **EVAL).verdict == "untested"
    unknown = dict(EVAL, conditions={"tasks": ["arc_challenge"], "compare_to": ["mistral-7b"]})
    assert "not in the registry" in check(registry, [], **unknown).reason


def test_a_vllm_run_holds_on_what_it_needed_not_on_its_reservation(registry):
    """vLLM fills its budget with KV cache: the verdict names the need by vLLM's accounting."""
    r = record(quant="fp8", metrics={"peak_memory_bytes": Metric(value=22 * 2**30, unit="bytes")})
    accounting = {"weights_bytes": 13 * 2**30, "activation_peak_bytes": 2**30, "cudagraph_estimate_bytes": None,
                  "kv_cache_needed_bytes": 2 * 2**30, "kv_cache_reserved_bytes": 6 * 2**30}
    r = r.model_copy(update={"details": {"engine": {"engine": "vllm", "memory_accounting": accounting}}})
    v = check(registry, [r], **FITS_4090)
    assert v.verdict == "holds"
    assert "needing 16.0 GiB by vLLM's accounting (weights 13.0 GiB + activations 1.0 GiB + KV for the run 2.0 GiB)" \
        in v.reason
    assert "reserved 6.0 GiB of KV cache" in v.reason and "22.0 GiB" not in v.reason


def test_the_format_the_engine_ran_decides_the_quant(registry):
    """An FP8 checkpoint runs FP8 whatever was asked: the verdict names what ran."""
    r = record(quant="bf16").model_copy(update={"details": {"engine": {"weights_format": "fp8"}}})
    assert check(registry, [r], **FITS_4090).conditions["quant"] == "fp8"


def llamacpp_cpu(n_ctx: int, kv_bytes: int, status: str = "ok"):
    r = record(model="mistral-3b", target="edge-4gb", quant="q4_k_m", status=status)
    engine = {"engine": "llama.cpp", "weights_format": "q4_k_m", "n_ctx": n_ctx, "repack": False,
              "model_buffer_bytes": 2_138_615_808, "kv_buffer_bytes": kv_bytes, "compute_buffer_bytes": 281_018_368,
              "output_buffer_bytes": 524_288}
    return r.model_copy(update={"details": {"engine": engine}, "hardware": {**r.hardware, "device": "cpu"},
                                "config": {"scenario": {"backend": "llama.cpp", "engine": {"max_model_len": n_ctx},
                                                        "context": None, "batch": 1}}})


FITS_4GB = dict(subject="mistral-3b", kind="inference-memory", conditions={"gpu": "edge-4gb"})


def test_llamacpp_buffers_decide_an_edge_budget_at_the_largest_context_that_fits(registry):
    small, large = llamacpp_cpu(4096, 436_207_616), llamacpp_cpu(32768, 3_489_660_928)
    v = check(registry, [small, large], **FITS_4GB)
    assert v.verdict == "holds" and v.evidence["decisive_record"] == small.id
    assert "measured on a CPU with llama.cpp" in v.reason and "<= 4.00 GiB on edge-4gb at q4_k_m, context 4096" in v.reason
    assert v.conditions["unstated"] == ["holds at q4_k_m; the quote states no quant", "4096 tokens of context "
                                        "(the largest measured that fits; the quote states none)"]
    v = check(registry, [large], **FITS_4GB)
    assert v.verdict == "fails" and "> 4.00 GiB" in v.reason
    assert v.conditions["unstated"] == ["measured at q4_k_m; the quote states no quant", "32768 tokens of context "
                                        "(the smallest measured; none fits; the quote states none)"]


def test_a_gpu_measurement_outranks_llamacpp_on_a_cpu(registry):
    capped_oom = record(model="mistral-3b", target="edge-4gb", quant="nf4", status="oom", emulated=True)
    v = check(registry, [llamacpp_cpu(4096, 436_207_616), capped_oom], **FITS_4GB)
    assert v.verdict == "fails" and v.evidence["decisive_record"] == capped_oom.id


def test_llamacpp_buffers_count_for_any_on_device_budget_whatever_budget_the_run_named(registry):
    run = llamacpp_cpu(4096, 436_207_616)  # named edge-4gb
    v = check(registry, [run], subject="mistral-3b", kind="inference-memory", conditions={"gpu": "phone-8gb"})
    assert v.verdict == "holds" and v.evidence["decisive_record"] == run.id and "on phone-8gb" in v.reason


def test_a_gpu_claim_counts_llamacpp_buffers_only_when_it_names_a_local_runner(registry):
    run = llamacpp_cpu(4096, 436_207_616)
    plain = check(registry, [run], subject="mistral-3b", kind="inference-memory", conditions={"gpu": "rtx-4090"})
    assert "decisive_record" not in plain.evidence  # the arithmetic verdict stands
    v = check(registry, [run], subject="mistral-3b", kind="inference-memory",
              conditions={"gpu": "rtx-4090", "runner": "ollama"})
    buffers = 2_138_615_808 + 436_207_616 + 281_018_368 + 524_288
    overhead = 320 * 2**20  # Ollama's published gap of buffers to nvidia-smi (308.6 MiB), rounded up to 64 MiB
    assert v.verdict == "holds" and v.evidence["cuda_overhead_bytes"] == overhead
    assert v.evidence["held_bytes"] == buffers + overhead
    assert v.reason.startswith("llama.cpp buffers measured on a CPU plus the runner's published CUDA overhead")
    assert "CUDA overhead 0.31 GiB) <= 23.99 GiB on rtx-4090" in v.reason


def test_a_local_runner_claim_on_a_too_small_card_fails_by_the_buffers_plus_overhead(registry):
    run = llamacpp_cpu(32768, 3_489_660_928)  # 5.50 GiB of buffers, 6.50 GiB with the overhead
    v = check(registry, [run], subject="mistral-3b", kind="inference-memory",
              conditions={"gpu": "edge-4gb", "runner": "llama.cpp"})
    assert v.verdict == "fails" and "cuda_overhead_bytes" not in v.evidence  # an edge budget has no CUDA context


def runtime_run(status: str, error: str | None = None):
    r = llamacpp_cpu(4096, 436_207_616, status=status)
    return r.model_copy(update={"error": error,
                                "config": {"scenario": {**r.config["scenario"], "output_len": 16}}})


RUNS_IN_LLAMACPP = dict(subject="mistral-3b", kind="runtime", conditions={"runner": "llama.cpp"})


def test_a_runtime_claim_waits_for_a_run_and_names_the_command(registry):
    v = check(registry, [], **RUNS_IN_LLAMACPP)
    assert v.verdict == "untested" and "model_type ministral3" in v.reason
    assert "bench run mistral-3b --backend llama.cpp --quant q4_k_m --weights synthetic --device cpu" in v.would_change


def test_a_runtime_claim_holds_when_llamacpp_loaded_and_generated_and_fails_when_it_could_not(registry):
    ok = runtime_run("ok")
    v = check(registry, [ok], **RUNS_IN_LLAMACPP)
    assert v.verdict == "holds" and v.evidence["decisive_record"] == ok.id and "generated 16 tokens" in v.reason
    broken = runtime_run("error", "RuntimeError: could not load x.gguf: unknown model architecture: 'nonesuch'\nmore")
    v = check(registry, [broken], **RUNS_IN_LLAMACPP)
    assert v.verdict == "fails" and "unknown model architecture: 'nonesuch'" in v.reason and "more" not in v.reason
    timed_out = runtime_run("timeout", "timed out")
    assert check(registry, [timed_out], **RUNS_IN_LLAMACPP).verdict == "untested"  # says nothing either way
    ollama = check(registry, [ok], subject="mistral-3b", kind="runtime", conditions={"runner": "ollama"})
    assert ollama.verdict == "holds" and "Ollama loads the same GGUF file" in ollama.reason
