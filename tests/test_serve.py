"""`bench serve` for real: llama.cpp's server (llama-cpp-python) on loopback with bench's tiny GGUF.

bench starts the server, sweeps two concurrency levels, writes one `serve` record and stops
the server (the port is free afterwards). Bad input is one line and exit 2.
"""

from __future__ import annotations

import json
import socket

import pytest

from bench.records.store import iter_records

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette_context")

SECRET = "sk-bench-test-0123456789"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One real sweep, shared by the checks below: c1 and c2, completions, forced 8-token answers."""
    import os
    import subprocess
    import sys

    from tests.helpers.paths import ROOT

    results = tmp_path_factory.mktemp("serve-results")
    cache = tmp_path_factory.mktemp("bench-cache")
    env = {**os.environ, "BENCH_CACHE_DIR": str(cache), "OPENAI_API_KEY": SECRET}
    done = subprocess.run([sys.executable, "-m", "bench.cli", "serve", "tiny-llama", "--quant", "q4_k_m",
                           "--weights", "synthetic", "--device", "cpu", "--concurrency", "1", "--concurrency", "2",
                           "--prompt-len", "16", "--output-len", "8", "--duration", "0.5", "--min-requests", "4",
                           "--warmup", "1", "--timeout", "30", "--results-dir", str(results)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done, results


def test_the_record_holds_both_levels_with_latencies_throughput_and_samples(sweep):
    done, results = sweep
    (record,) = list(iter_records(results))
    assert record.kind == "serve" and record.status == "ok" and record.model.id == "tiny-llama"
    assert record.model.weights == "synthetic"
    engine = record.details["engine"]
    assert engine["kind"] == "llama.cpp" and engine["version"] and engine["started_by_bench"]
    assert record.config["endpoint"].startswith("http://127.0.0.1:")
    levels = record.details["levels"]
    assert [level["level"] for level in levels] == ["c1", "c2"]
    for level in levels:
        assert level["errors"] == 0 and level["completed"] >= 4
        requests = level["requests_detail"]
        # Forced length: every answer stopped at max_tokens, so each carried exactly 8 tokens.
        assert all(r["finish_reason"] == "length" and r["output_tokens"] == 8 for r in requests)
        assert all(len(r["chunk_times_s"]) == 8 for r in requests)
        # Prompts counted by the model's own tokenizer (the server's tokenize endpoint).
        assert all(r["prompt_tokens"] <= 16 for r in requests) and max(r["prompt_tokens"] for r in requests) >= 12
        assert 0 < level["ttft_p50_s"] <= level["ttft_p90_s"] <= level["ttft_p99_s"] <= level["e2e_p99_s"]
        assert level["output_tokens_per_s"] == pytest.approx(8 * level["completed"] / level["duration_s"])
        assert level["total_tokens_per_s"] > level["output_tokens_per_s"]
    c2 = record.metrics["ttft_p50_s@c2"]
    assert c2.unit == "s" and len(c2.samples) == levels[1]["completed"]
    assert record.metrics["output_tokens_per_s@c1"].unit == "tokens/s"
    assert "c1" in done.stdout and "c2" in done.stdout  # the level table


def test_the_server_is_stopped_and_the_api_key_is_not_recorded(sweep):
    _, results = sweep
    (path,) = list(results.glob("*.json"))
    record = json.loads(path.read_text())
    port = int(record["config"]["endpoint"].rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
    text = path.read_text()
    assert SECRET not in text and record["config"]["api_key_env"] == "OPENAI_API_KEY"


@pytest.mark.parametrize("args, message", [
    (["http://user:pw@127.0.0.1:9"], "credentials"),
    (["http://127.0.0.1:9/v1/chat"], "root URL"),
    (["http://127.0.0.1:9", "--api", "embeddings"], "unknown api"),
    (["tiny-llama", "--device", "cpu", "--concurrency", "2", "--concurrency", "2"], "once"),
    (["tiny-llama", "--quant", "nf4", "--device", "cpu"], "vLLM serves"),
])
def test_bad_input_is_one_line_and_exit_2(run_bench, args, message, tmp_path):
    done = run_bench("serve", *args, "--results-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_url_where_nothing_listens_is_one_line(run_bench, tmp_path):
    from bench.serve.server import free_port

    done = run_bench("serve", f"http://127.0.0.1:{free_port()}", "--results-dir", str(tmp_path))
    assert done.returncode == 2 and "no OpenAI-compatible server answers" in done.stderr


def test_a_real_gguf_file_is_served_and_recorded_with_its_sha256(run_bench, registry, tmp_path, monkeypatch):
    import hashlib
    import shutil

    from bench.weights import synthetic_gguf

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    real = tmp_path / "tiny-llama-Q4_K_M.gguf"
    shutil.copy(synthetic_gguf.ensure(registry.model("tiny-llama"), "q4_k_m"), real)
    wrong = run_bench("serve", "mistral-3b", "--gguf", str(real), "--quant", "q4_k_m", "--device", "cpu",
                      "--results-dir", str(tmp_path / "results"))
    assert wrong.returncode == 2 and "is not mistral-3b" in wrong.stderr
    url = run_bench("serve", "http://127.0.0.1:9", "--gguf", str(real), "--results-dir", str(tmp_path / "results"))
    assert url.returncode == 2 and "--gguf names the file for a server bench starts" in url.stderr
    done = run_bench("serve", "tiny-llama", "--gguf", str(real), "--quant", "q4_k_m", "--device", "cpu",
                     "--concurrency", "1", "--prompt-len", "16", "--output-len", "4", "--duration", "0.3",
                     "--min-requests", "2", "--warmup", "1", "--results-dir", str(tmp_path / "results"))
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = list(iter_records(tmp_path / "results"))
    assert record.model.weights == "real" and record.details["levels"][0]["errors"] == 0
    recorded = record.details["gguf_file"]
    assert recorded["sha256"] == hashlib.sha256(real.read_bytes()).hexdigest() and recorded["source"] == "local"
