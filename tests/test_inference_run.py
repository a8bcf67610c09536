"""`bench run` for real on the CPU: both engines, Llama- and Mixtral-shaped tiny models.

Each run goes through the command line, the isolated child process and the record on
disk, as a user's run does. Shapes are tiny; the vLLM engine starts once per model.
"""

from __future__ import annotations

import json

import pytest

from bench.records.store import iter_records

pytest.importorskip("vllm")

SHAPE = ["--device", "cpu", "--batch", "4", "--prompt-len", "32", "--output-len", "16", "--iterations", "3",
         "--min-duration", "0.3"]
CASES = [("tiny-llama", "vllm"), ("tiny-mixtral", "vllm"), ("tiny-llama", "transformers"),
         ("tiny-mixtral", "transformers")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every case once; map (model, backend) -> (process, record)."""
    import os
    import subprocess
    import sys

    from tests.helpers.paths import ROOT

    results = tmp_path_factory.mktemp("results")
    out = {}
    for model, backend in CASES:
        proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", model, "--backend", backend, *SHAPE,
                               "--results-dir", str(results)], capture_output=True, text=True, cwd=ROOT,
                              env=os.environ.copy(), timeout=600)
        records = [r for r in iter_records(results) if r.model.id == model and r.config["scenario"]["backend"]
                   == backend]
        out[(model, backend)] = (proc, records[-1] if records else None)
    return results, out


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_run_writes_a_complete_ok_record(runs, case):
    _, out = runs
    proc, record = out[case]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert record is not None and record.status == "ok" and record.error is None
    data = json.loads(record.model_dump_json())
    for key in ("schema_version", "id", "kind", "status", "error", "model", "config", "hardware", "software",
                "metrics", "started_at", "duration_s"):
        assert key in data
    assert data["kind"] == "inference" and data["model"]["weights"] == "synthetic"
    assert data["hardware"]["emulated"] is False and data["hardware"]["target"] is None
    assert data["software"]["torch"] and data["software"]["transformers"] and data["software"]["vllm"]
    assert all("unit" in m for m in data["metrics"].values())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_metrics_are_positive_and_plausible(runs, case):
    _, out = runs
    m = {k: v.value for k, v in out[case][1].metrics.items()}
    for name in ("load_s", "ttft_s", "itl_p50_s", "itl_p99_s", "decode_tokens_per_s", "throughput_tokens_per_s",
                 "peak_memory_bytes"):
        assert m[name] > 0, name
    assert m["itl_p99_s"] >= m["itl_p50_s"]
    assert m["throughput_tokens_per_s"] > m["decode_tokens_per_s"]  # batch 4 beats batch 1
    assert m["total_throughput_tokens_per_s"] > m["throughput_tokens_per_s"]  # prompt tokens count there
    assert m["ttft_s"] < m["e2e_latency_s"]
    assert m["peak_memory_bytes"] > 100 * 2**20  # an engine with torch loaded is never this small
    assert m["latency_iterations"] >= 3


def test_raw_samples_are_kept(runs):
    _, out = runs
    record = out[("tiny-llama", "vllm")][1]
    ttft = record.metrics["ttft_s"]
    itl = record.metrics["itl_p50_s"]
    assert len(ttft.samples) == record.metrics["latency_iterations"].value
    assert len(itl.samples) == len(ttft.samples) * 15  # 16 tokens -> 15 gaps per request


def test_records_keep_the_engine_and_memory_reports(runs):
    _, out = runs
    record = out[("tiny-mixtral", "vllm")][1]
    engine = record.details["engine"]
    assert engine["engine"] == "vllm" and engine["kv_cache_tokens"] >= 4 * (32 + 16)
    assert engine["kv_cache_memory_bytes"] == record.config["scenario"]["engine"]["kv_cache_bytes"]
    assert record.details["memory"]["peak_memory_source"] == "rss-process-tree"
    assert out[("tiny-llama", "transformers")][1].details["engine"]["engine"] == "transformers"


def test_vllm_records_keep_vllms_own_memory_accounting(runs):
    """What vLLM says it holds, beside the reservation: weights as loaded, KV reserved vs what the run needs."""
    from pathlib import Path

    _, out = runs
    for model in ("tiny-llama", "tiny-mixtral"):
        record = out[(model, "vllm")][1]
        acc = record.details["engine"]["memory_accounting"]
        checkpoint = sum(f.stat().st_size for f in Path(record.model.path).expanduser().glob("*.safetensors"))
        assert abs(acc["weights_bytes"] - checkpoint) <= 0.02 * checkpoint
        per_token = acc["kv_cache_bytes_per_token"]
        assert acc["kv_cache_reserved_bytes"] >= acc["kv_cache_needed_bytes"] >= 4 * (32 + 16) * per_token > 0
        assert acc["kv_cache_reserved_bytes"] <= record.config["scenario"]["engine"]["kv_cache_bytes"]
        assert acc["model_load_bytes"] is None  # the CPU worker keeps no such figure: recorded as missing
        assert record.details["engine"]["weights_format"] == "bf16"


def test_results_lists_the_records(runs, run_bench):
    results, _ = runs
    proc = run_bench("results", "--results-dir", str(results), env={"COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 + len(CASES)  # header, rule, one line per record (a narrower terminal gets blocks)
    assert all(" ok " in line for line in lines[2:])
    (results / "broken.json").write_text("{not json")
    proc = run_bench("results", "--results-dir", str(results), "--json")
    assert proc.returncode == 0 and "broken.json" in proc.stderr
    assert len(json.loads(proc.stdout)) == len(CASES)
