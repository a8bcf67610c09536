"""A vLLM engine that does not fit ends as an out-of-memory record, with vLLM's own reason,
and that record fails a memory claim; and the pure parts of the vLLM backend (quant names,
what ran, the workers' accounting added up).

One real vLLM CPU engine starts here: tiny-llama with a KV budget half of what one
sequence of max_model_len needs. vLLM's engine core refuses it in its own process.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.config.specs import ClaimSource, ClaimSpec
from bench.estimate.memory import kv_cache_bytes
from bench.jobs.runner import execute, prepare_weights, resolve_model
from bench.launch import failures
from bench.records.store import iter_records
from bench.scenarios.inference import InferenceSettings
from bench.verdicts.decide import verdict_for

MAX_MODEL_LEN = 512

# Exception lines as the engines raise them (sources: vLLM 0.32, torch 2.13; the CPU ones as seen here).
OOM_LINES = [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "79.19 GiB of which 1.06 GiB is free.",
    "RuntimeError: CUDA error: out of memory",
    "RuntimeError: [enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
    "tried to allocate 4611686018427387904 bytes. Error code 12 (Cannot allocate memory)",
    "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
    "initializing the engine (this flag also controls CPU memory reservation on the CPU backend, despite its name).",
    "ValueError: To serve at least one request with the model's max seq len (1024), (0.0 GiB KV cache is needed, "
    "which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated "
    "maximum model length is 128.",
    "RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please try "
    "lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.",
    "ValueError: Cannot auto-fit max_model_len: not enough GPU memory available to serve even a single token.",
    "MemoryError",
]
OTHER_LINES = [
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
    # The card's free memory is short of the reservation asked for: another process holds it, not the model.
    "ValueError: Free memory on device cuda:0 (10.2/79.2 GiB) on startup is less than desired GPU memory "
    "utilization (0.9, 71.3 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.",
    "ValueError: Available memory on node 0 (1.0/2.0 GiB) on kv cache allocation is less than requested memory "
    "for kv (4.0 GiB). Decrease --kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE, or reduce CPU memory used by "
    "other processes.",
    "ValueError: The `fp8` quantization method no longer supports online quantization.",
]

# The end of a real engine-core failure as vLLM-CPU logs it, then the child's own error.
P = "(EngineCore pid=7032) ERROR 11-23 21:12:41 [core.py:1510] "
ENGINE_LOG = f"""\
{P}  File "/vllm/v1/core/kv_cache_utils.py", line 1030, in _check_enough_kv_cache_memory
{P}    raise ValueError(
{P}{OOM_LINES[4]}
(EngineCore pid=7032) ERROR 11-23 21:12:43 [multiproc_executor.py:315] Worker proc VllmWorker-0 died unexpectedly
Process EngineCore:
Traceback (most recent call last):
  File "/vllm/v1/core/kv_cache_utils.py", line 1030, in _check_enough_kv_cache_memory
{OOM_LINES[4]}
"""
CHILD_ERROR = """\
Traceback (most recent call last):
  File "/vllm/v1/engine/utils.py", line 1431, in wait_for_engine_startup
    raise RuntimeError(
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


@pytest.mark.parametrize("line", OOM_LINES)
def test_out_of_memory_in_every_engine_s_words(line):
    assert failures.is_oom(line)


@pytest.mark.parametrize("line", OTHER_LINES)
def test_other_errors_are_not_out_of_memory(line):
    assert not failures.is_oom(line)


def test_the_root_cause_is_the_engine_core_s_exception_line_without_its_log_prefix():
    assert failures.points_elsewhere(CHILD_ERROR)
    assert failures.root_cause(ENGINE_LOG + CHILD_ERROR) == OOM_LINES[4]
    assert failures.exception_lines("  File 'x.py'\n    raise ValueError('out of memory')\n") == []
    assert failures.root_cause(CHILD_ERROR) is None
    assert not failures.points_elsewhere("ValueError: the engine refused the config")


def test_the_cause_comes_first_and_the_text_stays_bounded():
    text = failures.with_cause(OOM_LINES[4], "x" * 10_000, 4000)
    assert text.startswith(OOM_LINES[4]) and len(text) == 4000 and text.endswith("x" * 100)


@pytest.fixture(scope="module")
def vllm_backend():
    pytest.importorskip("vllm")
    from bench.backends import vllm

    return vllm


@pytest.mark.parametrize(("quant", "checkpoint", "arg"), [
    ("bf16", None, None), ("fp16", None, None), ("fp8", None, "fp8_per_tensor"),
    ("fp8", "fp8", None), ("bf16", "fp8", None), ("bf16", "awq", None), ("int4", "awq", None),
    ("int4", "gptq", None),
])
def test_fp8_quantises_on_load_unless_the_checkpoint_names_its_own_method(vllm_backend, quant, checkpoint, arg):
    assert vllm_backend.quantization_arg(quant, checkpoint) == arg


def test_int4_needs_a_prequantized_checkpoint(vllm_backend):
    for method in (None, "fp8"):
        with pytest.raises(ValueError, match="int4 runs an AWQ/GPTQ checkpoint"):
            vllm_backend.quantization_arg("int4", method)


def test_bitsandbytes_is_not_offered_to_vllm(vllm_backend):
    from vllm.model_executor.layers.quantization import DEPRECATED_QUANTIZATION_METHODS, QUANTIZATION_METHODS

    methods = [m for m in vllm_backend.QUANTIZATION.values() if m]
    assert set(vllm_backend.QUANTIZATION) == {"bf16", "fp16", "fp8", "int4"}
    assert all(m in QUANTIZATION_METHODS and m not in DEPRECATED_QUANTIZATION_METHODS for m in methods)


def test_checkpoint_quant_method_is_read_where_vllm_reads_it(vllm_backend, tmp_path):
    assert vllm_backend.checkpoint_quant_method(str(tmp_path)) is None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "text_config": None}))
    assert vllm_backend.checkpoint_quant_method(str(tmp_path)) is None
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"quantization_config": {
        "quant_method": "fp8", "activation_scheme": "dynamic"}}}))
    assert vllm_backend.checkpoint_quant_method(str(tmp_path)) == "fp8"


@pytest.mark.parametrize(("quantization", "dtype", "ran"), [
    (None, "torch.bfloat16", "bf16"), (None, "torch.float16", "fp16"), ("fp8", "torch.bfloat16", "fp8"),
    ("fp8_per_tensor", "torch.bfloat16", "fp8"), ("awq_marlin", "torch.float16", "int4"),
    ("gptq", "torch.float16", "int4"), ("compressed-tensors", "torch.bfloat16", "compressed-tensors"),
])
def test_weights_format_names_what_ran(vllm_backend, quantization, dtype, ran):
    assert vllm_backend.weights_format(quantization, dtype) == ran


def test_workers_figures_add_up_and_a_missing_one_stays_missing(vllm_backend):
    reports = [{"weights_bytes": 10, "activation_peak_bytes": 3}, {"weights_bytes": 12, "activation_peak_bytes": None}]
    assert vllm_backend.summed(reports) == {"weights_bytes": 22, "activation_peak_bytes": None}


@pytest.fixture(scope="module")
def oom_record(registry, tmp_path_factory, vllm_backend):
    """tiny-llama under vLLM on the CPU with half the KV cache one max_model_len sequence needs, recorded."""
    results = tmp_path_factory.mktemp("results")
    model = resolve_model(registry, "tiny-llama")
    weights = prepare_weights(model, None)
    budget = kv_cache_bytes(model.architecture, MAX_MODEL_LEN, 1) // 2
    engine = dict(model_path=weights.path, device="cpu", dtype="bfloat16", quant="bf16",
                  max_model_len=MAX_MODEL_LEN, max_batch=1, kv_cache_bytes=budget, enforce_eager=True)
    settings = InferenceSettings(backend="vllm", engine=engine, vocab_size=model.architecture.vocab_size,
                                 prompt_len=16, output_len=4, batch=1)
    record = execute("inference", "bench.scenarios.inference:measure", asdict(settings), model=model,
                     weights=weights, device="cpu", gpu=None, config={"scenario": asdict(settings)},
                     results_dir=results, timeout_s=300)
    return results, record


def test_a_kv_budget_too_small_for_one_sequence_is_an_oom_record_with_vllm_s_reason(oom_record):
    results, record = oom_record
    assert record.status == "oom" and record.metrics == {}
    assert record.error.startswith(f"ValueError: To serve at least one request with the model's max seq len "
                                   f"({MAX_MODEL_LEN})")
    assert "larger than the available KV cache memory" in record.error
    assert "Engine core initialization failed" in record.error  # the child's own error follows the cause
    (on_disk,) = list(iter_records(results))
    assert on_disk.id == record.id and on_disk.status == "oom" and on_disk.error == record.error
    log = Path(record.details["log"]).read_text()  # the engine core's own traceback, kept beside the record
    assert "EngineCore" in log and "_check_enough_kv_cache_memory" in log


def test_the_oom_record_fails_a_memory_claim_it_matches(registry, oom_record):
    _, record = oom_record
    claim = ClaimSpec.model_validate({"id": "tiny-fits", "speaker": "t", "quote": "runs in any memory",
                                      "product": "p", "subject": "tiny-llama", "kind": "inference-memory",
                                      "conditions": {"quant": "bf16", "batch": 1}})
    source = ClaimSource(source="t.txt", title="t", products=["p"], claims=[claim])
    verdict = verdict_for(registry, source, claim, [record])
    assert verdict.verdict == "fails" and verdict.evidence["decisive_record"] == record.id
    assert "out of memory at bf16" in verdict.reason
