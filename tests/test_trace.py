"""`bench trace`: a training step traced on fake tensors, held to the CPU profiler where a real step runs.

The validation runs the same trainer twice on a tiny Llama: once for real, its tensor peak read from
the profiler's allocation events (`bench.calibration.training_probe`), once on fake tensors on the
CPU (`bench.scenarios.trace`), which must agree within 2% for LoRA, QLoRA and full SFT, DPO and a
reward model, with and without gradient checkpointing. A trace of a multi-billion-parameter shape
must not allocate it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from bench.config.hfconfig import TextConfig
from bench.config.specs import ModelSpec
from tests.helpers.cli import run_main
from tests.helpers.paths import ROOT

TINY = dict(model_type="llama", hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=64, intermediate_size=512, vocab_size=1024, max_position_embeddings=2048,
            tie_word_embeddings=False)
SEQUENCE, BATCH, TOLERANCE = 128, 2, 0.02


def _settings(arch: TextConfig, recipe, device: str = "cpu"):
    from bench.scenarios.finetune_settings import FinetuneSettings
    from bench.weights.synthetic_hf import build

    spec = ModelSpec(id="trace-test", display_name="trace test", license="apache-2.0", synthetic=True,
                     architecture=arch, sources={})
    return FinetuneSettings(model_path=str(build(spec, with_weights=False)), recipe=recipe.model_dump(),
                            device=device, steps=2, dataset="trace", adapter_dir=tempfile.mkdtemp() + "/adapter",
                            cpu_dtype="bfloat16")


def test_live_storages_count_each_storage_from_its_op_until_its_last_tensor_dies():
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.scenarios.trace import LiveStorages

    fake, live = FakeTensorMode(), LiveStorages()
    with fake:
        weight = torch.empty(1024, 256)  # 1 MiB of fp32, made before the count: registered
    live.track(weight, "parameters")
    with fake, live:
        live.phase = "forward"
        hidden = torch.empty(64, 1024)  # 256 KiB, kept: an activation
        scratch = hidden * 2  # 256 KiB, freed within the phase: a temporary
        view = scratch[:32]  # a view: no new storage
        del scratch
        assert live.total == 2**20 + 2 * 2**18  # the view keeps its storage alive
        del view
        live.end_forward()
        live.phase = "backward"
        out = hidden @ weight  # 64 x 256 fp32: 64 KiB
        assert bool(out.sum() > 0) is True  # a value read back: the stand-in, counted
    assert live.total == 2**20 + 2**18 + 2**16
    result = live.result()
    assert result["phases"]["forward"] == {"peak_bytes": 2**20 + 2 * 2**18, "by_category": {
        "parameters": 2**20, "gradients": 0, "optimizer_state": 0, "activations": 2**18, "temporaries": 2**18,
        "inputs": 0}}
    # In backward: the product, then its sum (4 bytes) and the comparison (1 byte) alive together.
    assert result["phases"]["backward"]["peak_bytes"] == 2**20 + 2**18 + 2**16 + 4 + 1
    assert result["peak_phase"] == "forward" and result["peak_bytes"] == 2**20 + 2 * 2**18
    assert sum(result["read_backs"].values()) == 1


@pytest.mark.parametrize("recipe_id, checkpointing", [
    *[(recipe_id, checkpointing) for recipe_id in ("lora-sft", "qlora-sft", "full-sft") for checkpointing in
      (True, False)], ("dpo", True), ("dpo", False), ("reward", True), ("reward", False)])
def test_trace_peak_matches_the_profiler(registry, recipe_id, checkpointing):
    from bench.calibration.training_probe import measure_training
    from bench.scenarios.trace import trace_step

    arch = TextConfig(**TINY)
    recipe = registry.recipe(recipe_id).model_copy(update={
        "sequence_length": SEQUENCE, "micro_batch": BATCH, "gradient_accumulation": 1,
        "gradient_checkpointing": checkpointing, "full_precision": "bf16"})
    settings = _settings(arch, recipe)
    traced = trace_step(settings)
    measured = measure_training(arch, recipe, steps=2)
    pairs = 2 if recipe_id in ("dpo", "reward") else 1  # chosen and rejected in one batch
    assert traced["micro_batch_shape"] == [pairs * BATCH, SEQUENCE]  # every micro batch full length
    assert traced["peak_bytes"] == pytest.approx(measured.active_peak_bytes, rel=TOLERANCE)
    categories = traced["by_category"]
    assert sum(categories.values()) == traced["peak_bytes"]
    # Parameters and buffers are the model's own, exactly; for LoRA the optimizer holds two moments per adapter.
    assert categories["parameters"] == measured.weights_bytes + (0 if recipe_id == "full-sft" else
                                                                 traced["trainable_parameter_bytes"])
    if recipe_id == "lora-sft":
        assert categories["optimizer_state"] >= 2 * traced["trainable_params"] * 4
    if recipe_id in ("dpo", "reward"):  # two moments per trainable tensor, in its dtype (a reward score head: bf16)
        assert categories["optimizer_state"] >= 2 * traced["trainable_parameter_bytes"]
    if recipe_id == "dpo":  # the reference forward (adapters off, no grad) runs inside the traced forward
        assert traced["trainer"] == "DPOTrainer" and any("dpo_trainer.py" in where for where in traced["read_backs"])
    if recipe_id == "reward":
        assert traced["trainer"] == "RewardTrainer"
    assert set(traced["phases"]) == {"forward", "backward", "optimizer"}
    assert traced["peak_phase"] in traced["phases"]


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-llama4"])
def test_the_traced_4bit_model_is_the_loaded_one(registry, model):
    """QLoRA's model on fake tensors holds what `bench finetune` loads: the same modules, the same parameters
    (names, shapes, dtypes, which train) and the same quantization state, byte for byte; Llama 4's fused experts
    stay fused and 16-bit, as loading a 16-bit checkpoint leaves them."""
    from dataclasses import replace

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bench.scenarios.finetune import StepLog, load_base, lora_config, make_trainer, state_census
    from bench.scenarios.trace import build_trainer, trace_rows

    arch = TextConfig(**TINY) if model == "tiny-llama" else registry.model(model).architecture
    recipe = registry.recipe("qlora-sft").model_copy(update={"sequence_length": SEQUENCE, "micro_batch": BATCH,
                                                             "gradient_accumulation": 1})
    traced = build_trainer(_settings(arch, recipe), FakeTensorMode(allow_non_fake_inputs=True)).model
    settings = replace(_settings(arch, recipe), synthetic_weights=True)
    tokenizer, base = load_base(settings, False)
    rows = trace_rows(SEQUENCE, BATCH, arch.vocab_size)
    loaded = make_trainer(settings, base, tokenizer, rows, lora_config(settings.recipe, base, False)[0],
                          StepLog()).model

    def shape(model):
        return {name: (tuple(p.shape), p.dtype, p.requires_grad) for name, p in model.named_parameters()}

    assert shape(traced) == shape(loaded)
    assert {n: type(m).__name__ for n, m in traced.named_modules()} == \
        {n: type(m).__name__ for n, m in loaded.named_modules()}
    assert any(dtype == torch.uint8 for _, dtype, _ in shape(traced).values())
    assert state_census(traced) == state_census(loaded)


def test_llama4_traces_every_expert_on_every_token_as_it_runs(registry):
    """Llama 4's experts see every token (no shape read from the router's values): a QLoRA step of the tiny
    Llama 4, its experts fused and 16-bit, matches the profiler's real step."""
    from bench.calibration.training_probe import measure_training
    from bench.scenarios.trace import trace_step

    arch = registry.model("tiny-llama4").architecture
    recipe = registry.recipe("qlora-sft").model_copy(update={"sequence_length": SEQUENCE, "micro_batch": BATCH,
                                                             "gradient_accumulation": 1})
    traced = trace_step(_settings(arch, recipe))
    assert traced["peak_bytes"] == pytest.approx(measure_training(arch, recipe, steps=2).active_peak_bytes,
                                                 rel=TOLERANCE)


def test_checkpointing_lowers_the_traced_activations(registry):
    from bench.scenarios.trace import trace_step

    arch = TextConfig(**TINY)
    base = registry.recipe("lora-sft").model_copy(update={"sequence_length": SEQUENCE, "micro_batch": BATCH,
                                                          "gradient_accumulation": 1})
    kept = trace_step(_settings(arch, base.model_copy(update={"gradient_checkpointing": False})))
    checkpointed = trace_step(_settings(arch, base.model_copy(update={"gradient_checkpointing": True})))
    forward = lambda t: t["phases"]["forward"]["by_category"]["activations"]  # noqa: E731
    assert forward(checkpointed) < forward(kept)


def test_a_large_trace_holds_no_memory_of_its_size(tmp_path):
    """A 2.7B-parameter Llama shape (Llama 3.1 8B's layers, 8 of them) would need 5 GiB in bf16; the trace's
    process stays far below that."""
    script = textwrap.dedent("""
        import json, resource, sys, tempfile
        from bench.config.hfconfig import TextConfig
        from bench.config.registry import load_registry
        from tests.test_trace import _settings
        from bench.scenarios.trace import trace_step

        arch = TextConfig(model_type="llama", hidden_size=4096, num_hidden_layers=8, num_attention_heads=32,
                          num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                          max_position_embeddings=131072, tie_word_embeddings=False)
        recipe = load_registry().recipe("lora-sft").model_copy(update={"sequence_length": 512, "micro_batch": 1,
                                                                        "gradient_accumulation": 1})
        traced = trace_step(_settings(arch, recipe))
        print(json.dumps({"parameters": traced["by_category"]["parameters"], "peak": traced["peak_bytes"],
                          "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["parameters"] > 5 * 2**30  # the bf16 weights the trace accounted for
    assert out["rss"] < 1.5 * 2**30 < out["peak"]


@pytest.mark.parametrize("recipe_id", ["lora-sft", "dpo"])
def test_bench_trace_writes_a_trace_record(tmp_path, run_bench, recipe_id):
    proc = run_bench("trace", "tiny-llama", "--finetune", recipe_id, "--device", "cpu", "--context", "64",
                     "--batch", "2", "--gpu", "4090", "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from bench.records.store import iter_records

    (record,) = list(iter_records(tmp_path))
    assert record.kind == "trace" and record.status == "ok"
    assert record.config["recipe"]["sequence_length"] == 64 and record.config["recipe"]["micro_batch"] == 2
    peak = record.metrics["traced_peak_bytes"].value
    parts = [record.metrics[f"traced_{c}_bytes"].value for c in
             ("parameters", "gradients", "optimizer_state", "activations", "temporaries", "inputs")]
    assert peak == sum(parts) and peak > 0
    assert record.details["memory"]["phases"]["backward"]["peak_bytes"] <= peak
    assert record.details["estimate"]["active_peak_bytes"] > 0 and record.hardware["target"] == "rtx-4090"
    assert record.details["engine"]["unseen"] and record.software["torch"]
    assert "traced tensor peak" in proc.stdout
    assert record.details["engine"]["trainer"] == ("DPOTrainer" if recipe_id == "dpo" else "SFTTrainer")


@pytest.mark.parametrize("model, recipe_id, named", [("tiny-mixtral", "lora-sft", "MoE"),
                                                      ("tiny-mixtral", "dpo", "MoE")])
def test_untraceable_recipes_are_refused_in_one_line(tmp_path, run_bench, model, recipe_id, named):
    proc = run_bench("trace", model, "--finetune", recipe_id, "--device", "cpu", "--results-dir", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and named in proc.stderr
    assert not list(Path(tmp_path).glob("*.json"))


def test_cuda_traces_are_refused_where_torch_has_no_cuda(tmp_path, monkeypatch, capsys):
    """The refusal follows the installed torch; a torch without CUDA is set here so every machine checks it."""
    monkeypatch.setattr("bench.jobs.trace._torch_has_cuda", lambda: False)
    code, err = run_main(["trace", "tiny-llama", "--finetune", "lora-sft", "--results-dir", str(tmp_path)],
                         monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--device cpu" in err and not list(Path(tmp_path).glob("*.json"))


@pytest.mark.parametrize("method, reference, device, named", [
    ("dpo", "copy", "cpu", "adapter_off"), ("dpo", "precomputed", "cpu", "precomputed"),
    ("dpo", "adapter_off", "cuda", "--device cpu"), ("ppo", "adapter_off", "cpu", "ppo")])
def test_dpo_references_the_trace_cannot_run_are_refused_in_one_line(method, reference, device, named):
    from bench.scenarios.trace_settings import unsupported_trace

    refused = unsupported_trace(method, "bf16", False, reference, device)
    assert refused and "\n" not in refused and named in refused


@pytest.mark.parametrize("method", ["dpo", "reward", "lora", "qlora", "full"])
def test_dense_recipes_of_every_traced_method_pass_the_refusals(method):
    from bench.scenarios.trace_settings import unsupported_trace

    assert unsupported_trace(method, "nf4" if method == "qlora" else "bf16", False, "adapter_off", "cpu") is None
    assert unsupported_trace(method, "bf16", True) is not None  # an MoE model is refused whatever the method


# -- inference: `bench trace --quant`, one generate of `bench run --backend transformers` -------------------------

def _measured_generate(model_path: str, quant: str, prompt_len: int, batch: int, output_len: int, vocab: int) -> int:
    """The tensor peak of one real generate by bench's transformers backend on the CPU (random weights): what
    the model holds, plus the profiler's allocator total above it at its highest."""
    import random

    from torch.profiler import ProfilerActivity, profile

    from bench.backends.base import EngineSettings
    from bench.backends.hf import TransformersBackend
    from bench.calibration.profiler import cpu_allocations
    from bench.scenarios.inference import random_prompts

    backend = TransformersBackend(EngineSettings(model_path=model_path, device="cpu", quant=quant,
                                                 dtype="float16" if quant == "fp16" else "bfloat16",
                                                 synthetic_weights=True))
    backend.load()
    model = backend.model
    resident = sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for t in (*model.parameters(), *model.buffers())}.values())
    prompts = random_prompts(batch, prompt_len, vocab, random.Random(0))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        (gen, *_) = backend.generate(prompts, output_len)
    assert gen.output_tokens == output_len
    return resident + max(total for _, total in cpu_allocations(prof)[0])


@pytest.mark.parametrize("quant, prompt_len, batch, output_len", [("bf16", 128, 2, 16), ("bf16", 128, 1, 8),
                                                                  ("fp16", 64, 2, 8)])
def test_inference_trace_peak_matches_the_profiler(quant, prompt_len, batch, output_len):
    """One generate traced on fake tensors holds the peak the same generate reaches for real, within 2%; the
    KV cache is the cache's keys and values at the prompt's length (per layer, K and V, per KV head). Prompts of
    at least 128 tokens: below that torch's CPU bf16 matmul allocates scratch of its own inside `aten::mm`
    (seen here: 48 rows, +2.2% over the trace), a kernel's buffer no dispatch mode sees (`UNSEEN`)."""
    from bench.scenarios.trace import trace_generate

    arch = TextConfig(**TINY)
    spec = ModelSpec(id="trace-test", display_name="trace test", license="apache-2.0", synthetic=True,
                     architecture=arch, sources={})
    from bench.weights.synthetic_hf import build

    path = str(build(spec, with_weights=False))
    traced = trace_generate(path, quant, prompt_len, batch, output_len, arch.vocab_size)
    measured = _measured_generate(path, quant, prompt_len, batch, output_len, arch.vocab_size)
    assert traced["peak_bytes"] == pytest.approx(measured, rel=TOLERANCE)
    assert traced["output_tokens"] == output_len and set(traced["phases"]) == {"prefill", "decode"}
    categories = traced["by_category"]
    assert sum(categories.values()) == traced["peak_bytes"]
    assert categories["inputs"] == 2 * batch * prompt_len * 8  # the prompt's ids and its mask, int64
    kv_per_token = arch.num_hidden_layers * 2 * arch.num_key_value_heads * arch.head_dim * 2
    prefill = traced["phases"]["prefill"]["by_category"]
    assert prefill["kv_cache"] == batch * prompt_len * kv_per_token
    assert any("answered from the length" in where for where in traced["read_backs"])


def test_bench_trace_quant_writes_an_inference_trace_record(tmp_path, run_bench):
    proc = run_bench("trace", "tiny-llama", "--quant", "bf16", "--device", "cpu", "--context", "48", "--batch", "2",
                     "--output-len", "8", "--gpu", "4090", "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from bench.records.store import iter_records

    (record,) = list(iter_records(tmp_path))
    assert record.kind == "trace" and record.status == "ok" and "recipe" not in record.config
    assert record.config["inference"] == {"quant": "bf16", "context": 48, "prompt_len": 40, "batch": 2,
                                          "output_len": 8}
    peak = record.metrics["traced_peak_bytes"].value
    parts = [record.metrics[f"traced_{c}_bytes"].value for c in
             ("parameters", "kv_cache", "activations", "temporaries", "inputs")]
    assert peak == sum(parts) and peak > 0 and record.metrics["traced_kv_cache_bytes"].value > 0
    estimate = record.details["estimate"]
    assert estimate["active_peak_bytes"] > estimate["weights_bytes"] > 0 and estimate["kv_cache_bytes"] > 0
    assert record.hardware["target"] == "rtx-4090" and "traced tensor peak" in proc.stdout
    from bench.report.cite import record_command

    assert record_command(record) == ("bench trace tiny-llama --quant bf16 --context 48 --batch 2 --output-len 8 "
                                      "--device cpu --gpu rtx-4090")  # what a citation tells the reader to run


@pytest.mark.parametrize("args, named", [
    (("--device", "cpu"), "exactly one of --finetune"),
    (("--finetune", "lora-sft", "--quant", "bf16", "--device", "cpu"), "exactly one of --finetune"),
    (("--quant", "nf4", "--device", "cpu"), "_convert_weight_packed_for_cpu"),
    (("--quant", "bf16"), "--device cpu"),
    (("--quant", "bf16", "--device", "cpu", "--context", "8", "--output-len", "8"), "--context 8")])
def test_inference_traces_it_cannot_run_are_refused_in_one_line(tmp_path, monkeypatch, capsys, args, named):
    code, err = run_main(["trace", "tiny-llama", *args, "--results-dir", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and named in err
    assert not list(Path(tmp_path).glob("*.json"))
