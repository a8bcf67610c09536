"""What `bench run` does when it cannot or does not finish: one line and exit 2 for bad input,
a failed record and exit 1 for a run that fails."""

from __future__ import annotations

import json
from pathlib import Path

from bench.records.store import iter_records


def test_no_gpu_points_to_plan_and_cpu(run_bench):
    proc = run_bench("run", "mistral-3-small", "--gpu", "4090")
    assert proc.returncode == 2
    assert "no CUDA GPU" in proc.stderr and "bench plan mistral-3-small --gpu rtx-4090" in proc.stderr
    assert "--device cpu" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_hub_is_one_line(run_bench, tmp_path):
    proc = run_bench("run", "mistral-3-small", "--device", "cpu", "--results-dir", str(tmp_path),
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2
    assert "mistralai/Mistral-Small-24B-Instruct-2501" in proc.stderr and "not in the local hub cache" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_model_without_public_weights(run_bench):
    proc = run_bench("run", "mistral-medium-3", "--device", "cpu")
    assert proc.returncode == 2 and "has no public weights" in proc.stderr


def test_cpu_refuses_cuda_only_quants_and_gpu_caps(run_bench):
    assert "on --device cpu runs bf16, fp16, not fp8" in run_bench("run", "tiny-llama", "--device", "cpu", "--quant",
                                                                   "fp8").stderr
    assert "only llama.cpp runs name a target" in run_bench("run", "tiny-llama", "--device", "cpu",
                                                         "--gpu", "4090").stderr


def test_nf4_on_a_4090_without_a_gpu_stops_before_any_download(run_bench, tmp_path):
    proc = run_bench("run", "mistral-3-small", "--gpu", "4090", "--quant", "nf4", "--results-dir", str(tmp_path),
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no CUDA GPU" in proc.stderr  # the hub cache was never asked (it would say "not in the local hub cache")
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob("*.json"))


def test_vllm_is_never_asked_for_bitsandbytes(run_bench):
    proc = run_bench("run", "tiny-llama", "--device", "cpu", "--backend", "vllm", "--quant", "nf4")
    assert proc.returncode == 2 and "vLLM does not offer" in proc.stderr


def test_timeout_becomes_a_record(run_bench, tmp_path):
    proc = run_bench("run", "tiny-llama", "--device", "cpu", "--backend", "transformers", "--min-duration", "120",
                     "--timeout", "8", "--results-dir", str(tmp_path))
    assert proc.returncode == 1
    (record,) = list(iter_records(tmp_path))
    assert record.status == "timeout" and "timed out after 8 s" in record.error
    assert record.metrics == {} and record.model.id == "tiny-llama"
    data = json.loads((tmp_path / f"{record.id}.json").read_text())
    assert data["software"]["bench_commit"] and data["hardware"]["device"] == "cpu"


def test_local_model_directory(run_bench, tmp_path, registry):
    from bench.weights import synthetic_hf

    path = synthetic_hf.build(registry.model("tiny-llama"), with_weights=True)
    proc = run_bench("run", str(path), "--device", "cpu", "--backend", "transformers", "--iterations", "2",
                     "--min-duration", "0.1", "--batch", "2", "--output-len", "4", "--prompt-len", "8",
                     "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (record,) = list(iter_records(tmp_path))
    assert Path(record.model.path).expanduser() == path and record.model.weights == "real"
