"""llama.cpp for real on the CPU: a tiny GGUF written by bench, loaded, measured, recorded.

No mock: the file goes through llama.cpp's own quantizer (Q4_K_M), is loaded by llama.cpp
through the backend and through `bench run`, and llama.cpp's buffer account is checked
against the KV-cache arithmetic. Broken files (truncated, an architecture llama.cpp does
not know) end as a recorded error, never a crash of bench's own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.records.store import iter_records
from tests.helpers.paths import ROOT

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

MODEL = "tiny-llama"  # hidden 256, 2 layers, 4 heads, 2 KV heads, head_dim 64: rows divide into 256
N_CTX = 256
MIB = 2**20


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-cache")
    old = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def tiny_gguf(cache_dir, registry):
    from bench.weights import synthetic_gguf

    return synthetic_gguf.ensure(registry.model(MODEL), "q4_k_m")


def test_synthetic_gguf_has_the_real_names_shapes_and_llama_cpp_types(tiny_gguf, registry):
    import gguf

    from bench.weights import synthetic_gguf

    cfg = registry.model(MODEL).architecture
    reader = gguf.GGUFReader(tiny_gguf)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    expected = synthetic_gguf.tensors(cfg)
    assert set(types) == {t.name for t in expected}
    for t in expected:  # GGUF lists dimensions contiguous-first
        assert shapes[t.name] == tuple(reversed(t.shape)), t.name
    assert synthetic_gguf.file_type(tiny_gguf) == "q4_k_m"
    assert types["blk.0.attn_q.weight"] == "Q4_K"
    assert types["output.weight"] == "Q6_K"  # the _M mix: llama.cpp's own choice
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert reader.get_field("general.architecture").contents() == "llama"
    assert reader.get_field("llama.block_count").contents() == cfg.num_hidden_layers
    assert len(reader.get_field("tokenizer.ggml.tokens").contents()) == cfg.vocab_size
    # Random, not zero: the blocks were filled after quantizing.
    q = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight")
    assert int(q.data.view("uint8").astype("int64").sum()) > 0
    # Cached: a second call returns the same file without writing it again.
    mtime = tiny_gguf.stat().st_mtime_ns
    assert synthetic_gguf.ensure(registry.model(MODEL), "q4_k_m") == tiny_gguf
    assert tiny_gguf.stat().st_mtime_ns == mtime


def test_the_16_bit_intermediate_of_a_24b_shape_costs_no_disk(registry, tmp_path):
    """The quantizer's input is a sparse file: a 47 GB F16 shape takes a few MB of disk."""
    from bench.weights import synthetic_gguf

    path = tmp_path / "skeleton.gguf"
    synthetic_gguf.write_f16_skeleton(registry.model("mistral-3-small").architecture, path, "skeleton")
    size, allocated = path.stat().st_size, path.stat().st_blocks * 512
    path.unlink()
    assert size > 45e9 and allocated < 64 * MIB


def test_backend_generates_exactly_n_tokens_and_reports_llama_cpp_buffers(tiny_gguf, registry):
    from bench.backends import EngineSettings, create_backend

    cfg = registry.model(MODEL).architecture
    backend = create_backend("llama.cpp", EngineSettings(model_path=str(tiny_gguf), device="cpu", quant="q4_k_m",
                                                          max_model_len=N_CTX, max_batch=2))
    backend.load()
    try:
        gens = backend.generate([[5, 6, 7, 8, 9, 10, 11, 12], [20, 21, 22, 23, 24, 25, 26, 27]], 6)
        assert [g.output_tokens for g in gens] == [6, 6]
        stamps = gens[0].token_times + gens[1].token_times  # seconds since the batch was submitted
        assert len(stamps) == 12 and all(b >= a for a, b in zip(stamps, stamps[1:])) and stamps[0] > 0
        info = backend.engine_info()
    finally:
        backend.close()
    assert info["engine"] == "llama.cpp" and info["batching"] == "sequential"
    assert info["weights_format"] == "q4_k_m"
    assert info["n_ctx"] == N_CTX and info["n_threads"] >= 1 and info["use_mmap"] is True
    assert info["model_buffer_bytes"] > 0 and info["compute_buffer_bytes"] > 0
    assert info["output_buffer_bytes"] >= 0  # logits of one token: 4 KiB here, which llama.cpp logs as 0.00 MiB
    assert set(info["buffers"]["model"]) >= {"CPU_Mapped"}
    # f16 K and V: 2 x layers x kv_heads x head_dim x 2 bytes per cell, n_ctx cells (llama.cpp logs MiB
    # to two decimals, so the parsed figure is exact to 0.005 MiB).
    formula = 2 * cfg.num_hidden_layers * cfg.kv_heads * cfg.head_size * 2 * N_CTX
    assert abs(info["kv_buffer_bytes"] - formula) <= 0.005 * MIB
    assert info["kv_caches"] == [{"cells": N_CTX, "layers": cfg.num_hidden_layers}]
    assert info["model_buffer_bytes"] >= info["model_tensor_bytes"] * 0.99
    assert info["perf"]["n_eval"] >= 10  # llama.cpp's own counters saw the generated tokens
    assert "CPU" in info["system_info"]


def test_the_run_path_imports_no_engine_until_the_child():
    code = ("import sys, bench.cli, bench.jobs.inference, bench.jobs.preflight, bench.weights.synthetic_gguf, bench.backends; "
            "print(sorted(m for m in ('llama_cpp', 'gguf', 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_bench_run_llama_cpp_writes_an_ok_record(cache_dir, tiny_gguf, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", MODEL, "--backend", "llama.cpp", "--quant", "q4_k_m",
         "--weights", "synthetic", "--device", "cpu", "--batch", "2", "--prompt-len", "16", "--output-len", "4",
         "--iterations", "2", "--min-duration", "0", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "BENCH_CACHE_DIR": str(cache_dir)},
        timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = list(iter_records(tmp_path))
    assert record.status == "ok" and record.model.weights == "synthetic"
    engine = json.loads(record.model_dump_json())["details"]["engine"]
    assert engine["engine"] == "llama.cpp" and engine["weights_format"] == "q4_k_m"
    assert engine["kv_buffer_bytes"] > 0 and engine["model_buffer_bytes"] > 0 and engine["compute_buffer_bytes"] > 0
    assert record.metrics["decode_tokens_per_s"].value > 0 and record.metrics["peak_memory_bytes"].value > 0


def test_a_context_beyond_the_model_is_one_line_exit_2(run_bench, tmp_path):
    proc = run_bench("run", MODEL, "--backend", "llama.cpp", "--quant", "q4_k_m", "--weights", "synthetic",
                     "--device", "cpu", "--context", "100000", "--results-dir", str(tmp_path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "exceed" in proc.stderr


def _measure_broken(path, tmp_path, n_ctx: int = 64, headroom_bytes: int | None = None) -> "object":
    """bench's measurement of `path` in an isolated child; with `headroom_bytes`, the child's address space
    is capped that far above what it holds."""
    from bench.launch.isolate import run_isolated

    settings = {"backend": "llama.cpp", "vocab_size": 1024, "prompt_len": 4, "output_len": 2, "batch": 1,
                "warmup": 0, "min_iterations": 1, "min_duration_s": 0, "throughput_runs": 1,
                "engine": {"model_path": str(path), "device": "cpu", "quant": "q4_k_m", "max_model_len": n_ctx}}
    if headroom_bytes is None:
        return run_isolated("bench.scenarios.inference:measure", {"settings": settings}, 120,
                            log_path=tmp_path / "run.log")
    return run_isolated("tests.helpers.isolate_targets:measures_within_an_address_limit",
                        {"settings": settings, "headroom_bytes": headroom_bytes}, 120, log_path=tmp_path / "run.log")


def test_a_truncated_gguf_is_a_recorded_error(tiny_gguf, tmp_path):
    broken = tmp_path / "truncated.gguf"
    broken.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    outcome = _measure_broken(broken, tmp_path)
    assert outcome.status == "error"
    assert "llama.cpp could not load truncated.gguf" in outcome.error


def test_a_kv_cache_that_cannot_be_allocated_is_a_recorded_oom(tiny_gguf, tmp_path):
    # A 128 GiB KV cache in a child capped 16 GiB above what it holds: ggml's buffer allocation is refused
    # on any kernel (a smaller cap fails earlier, in llama.cpp's own per-cell tables, as std::bad_alloc).
    outcome = _measure_broken(tiny_gguf, tmp_path, n_ctx=2**27, headroom_bytes=16 * 2**30)
    assert outcome.status == "oom"
    assert "could not make a context" in outcome.error and "failed to allocate" in outcome.error


def test_a_context_whose_tables_cannot_be_allocated_is_a_recorded_oom(tiny_gguf, tmp_path):
    # Capped 2 GiB above what it holds, the child fails before the KV buffer, in C++'s allocator.
    outcome = _measure_broken(tiny_gguf, tmp_path, n_ctx=2**27, headroom_bytes=2 * 2**30)
    assert outcome.status == "oom" and "std::bad_alloc" in outcome.error


def test_an_architecture_llama_cpp_does_not_know_is_a_recorded_error(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "unknown-arch.gguf"
    writer = gguf.GGUFWriter(path, "nonesucharch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    outcome = _measure_broken(path, tmp_path)
    assert outcome.status == "error"
    assert "could not load unknown-arch.gguf" in outcome.error and "nonesucharch" in outcome.error


@pytest.mark.parametrize("model", ["tiny-mixtral", "tiny-llama4"])
def test_moe_architectures_load_and_generate(cache_dir, registry, model):
    from bench.backends import EngineSettings, create_backend
    from bench.weights import synthetic_gguf

    path = synthetic_gguf.ensure(registry.model(model), "q4_k_m")
    backend = create_backend("llama.cpp", EngineSettings(model_path=str(path), device="cpu", max_model_len=200))
    backend.load()
    try:
        (gen,) = backend.generate([[5, 6, 7, 8]], 3)
        info = backend.engine_info()
    finally:
        backend.close()
    assert gen.output_tokens == 3 and info["weights_format"] == "q4_k_m"
    cfg = registry.model(model).architecture
    # llama.cpp rounds the cache up to 256 cells; every layer holds K and V for each (Llama 4's chunked
    # layers keep min(window, cells): llama.cpp fixes the window at 8192).
    cells = 256
    assert sum(c["layers"] for c in info["kv_caches"]) == cfg.num_hidden_layers
    assert {c["cells"] for c in info["kv_caches"]} == {cells}
    assert abs(info["kv_buffer_bytes"] - 2 * cfg.num_hidden_layers * cfg.kv_heads * cfg.head_size * 2 * cells) \
        <= 0.01 * MIB


def test_buffer_lines_parse_into_bytes():
    from bench.backends.llamacpp import parse_buffers

    log = """load_tensors:   CPU_Mapped model buffer size =     2.21 MiB
load_tensors:   CPU_REPACK model buffer size =     1.62 MiB
llama_context:        CPU  output buffer size =     0.49 MiB
llama_kv_cache:        CPU KV buffer size =     0.25 MiB
llama_kv_cache:        CPU KV buffer size =     0.75 MiB
sched_reserve:        CPU compute buffer size =     9.00 MiB
sched_reserve:        CPU compute buffer size =     5.52 MiB
"""
    out = parse_buffers(log)
    assert out["model_buffer_bytes"] == round(2.21 * MIB) + round(1.62 * MIB)
    assert out["buffers"]["model"] == {"CPU_Mapped": round(2.21 * MIB), "CPU_REPACK": round(1.62 * MIB)}
    assert out["kv_buffer_bytes"] == MIB  # two KV caches (global and chunked layers), summed
    assert out["compute_buffer_bytes"] == round(5.52 * MIB)  # reserved again: the last size
    assert out["output_buffer_bytes"] == round(0.49 * MIB)


def test_repack_and_threads_can_be_set_and_are_recorded(tiny_gguf, monkeypatch):
    from bench.backends import EngineSettings, create_backend

    monkeypatch.setenv("BENCH_LLAMACPP_REPACK", "0")
    monkeypatch.setenv("BENCH_LLAMACPP_THREADS", "1")
    backend = create_backend("llama.cpp", EngineSettings(model_path=str(tiny_gguf), device="cpu", max_model_len=64))
    backend.load()
    try:
        (gen,) = backend.generate([[5, 6, 7]], 2)
        info = backend.engine_info()
    finally:
        backend.close()
    assert gen.output_tokens == 2
    assert info["repack"] is False and info["n_threads"] == 1 and set(info["buffers"]["model"]) == {"CPU_Mapped"}


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-mixtral", "tiny-llama4"])
def test_the_planner_predicts_the_tensor_bytes_llama_cpp_writes(cache_dir, registry, model):
    """The planner's GGUF weights (its copy of llama.cpp's per-tensor rules) against llama.cpp's quantizer."""
    import gguf

    from bench.estimate.plan import PlanRequest, Subject, make_plan
    from bench.weights import synthetic_gguf

    spec = registry.model(model)
    for quant in ("q4_0", "q4_k_m", "q5_k_s", "q8_0"):
        path = synthetic_gguf.ensure(spec, quant)
        written = sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)
        planned = make_plan(PlanRequest(Subject.from_spec(spec), quant=quant))["memory"]["weights_bytes"]
        assert planned == written, (model, quant)


@pytest.mark.parametrize("args,expected", [
    (["mistral-3b", "--quant", "q4_k_m"], "give --gguf PATH or owner/repo:file.gguf@COMMIT, or --weights synthetic"),
    (["tiny-llama", "--quant", "nf4", "--weights", "synthetic"], "not nf4"),
])
def test_runs_llama_cpp_cannot_do_are_one_line_exit_2(run_bench, tmp_path, args, expected):
    proc = run_bench("run", *args, "--backend", "llama.cpp", "--device", "cpu", "--results-dir", str(tmp_path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr and not list(tmp_path.iterdir())


def _run_real(run_bench, tmp_path, model, gguf, *extra):
    return run_bench("run", model, "--backend", "llama.cpp", "--gguf", str(gguf), "--device", "cpu", "--batch", "2",
                     "--prompt-len", "16", "--output-len", "4", "--iterations", "2", "--min-duration", "0",
                     "--results-dir", str(tmp_path / "results"), *extra)


def test_a_local_gguf_file_runs_as_real_weights_with_its_sha256_recorded(run_bench, tiny_gguf, tmp_path):
    import hashlib
    import shutil

    real = tmp_path / "tiny-llama-Q4_K_M.gguf"
    shutil.copy(tiny_gguf, real)
    proc = _run_real(run_bench, tmp_path, MODEL, real, "--quant", "q4_k_m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = list(iter_records(tmp_path / "results"))
    assert record.status == "ok" and record.model.weights == "real"
    recorded = record.config["scenario"]["gguf_file"]
    assert recorded["sha256"] == hashlib.sha256(real.read_bytes()).hexdigest()
    assert recorded["source"] == "local" and recorded["bytes"] == real.stat().st_size
    assert recorded["quant"] == "q4_k_m" and recorded["architecture"] == "llama"


@pytest.mark.parametrize("problem,expected", [
    ("another-model", "is not mistral-3b: its layers 2 (not 26), hidden size 256 (not 3072)"),
    ("wrong-quant", "is q4_k_m, not q8_0: pass --quant q4_k_m"),
    ("not-gguf", "is not a readable GGUF file"),
    ("missing", "no such file"),
    ("branch", "a hub file is owner/repo:file.gguf@<40-hex commit>"),
])
def test_a_gguf_that_is_not_the_model_or_not_a_gguf_is_one_line_exit_2(run_bench, tiny_gguf, tmp_path, problem,
                                                                         expected):
    model, gguf, quant = MODEL, tiny_gguf, "q4_k_m"
    if problem == "another-model":
        model = "mistral-3b"
    elif problem == "wrong-quant":
        quant = "q8_0"
    elif problem == "not-gguf":
        gguf = tmp_path / "notes.gguf"
        gguf.write_text("not a gguf file")
    elif problem == "missing":
        gguf = tmp_path / "absent.gguf"
    elif problem == "branch":
        gguf = "someone/tiny:tiny.gguf@main"
    proc = _run_real(run_bench, tmp_path, model, gguf, "--quant", quant)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in proc.stderr and not (tmp_path / "results").exists()


def test_a_pinned_hub_file_is_found_through_the_hub_cache(tiny_gguf, registry, tmp_path, monkeypatch):
    """The hub is unreachable here: the real hub download code reads the standard cache layout offline."""
    import shutil

    from huggingface_hub import constants

    from bench.weights.gguf_file import resolve, sha256_of

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--someone--tiny-GGUF" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_gguf, snapshot / "tiny-Q4_K_M.gguf")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    found = resolve(f"someone/tiny-GGUF:tiny-Q4_K_M.gguf@{commit}", registry.model(MODEL).architecture, MODEL,
                    "q4_k_m")
    assert (found.source, found.repo, found.file, found.revision) == ("hub", "someone/tiny-GGUF",
                                                                      "tiny-Q4_K_M.gguf", commit)
    assert found.sha256 == sha256_of(tiny_gguf) and found.quant == "q4_k_m"
