"""`bench eval` for real, offline: the smoke suite on both backends, and a task whose data is unreachable."""

from __future__ import annotations

import math

import pytest

from bench.records.store import iter_records

pytest.importorskip("lm_eval")
pytest.importorskip("vllm")

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import os
    import subprocess
    import sys

    from tests.helpers.paths import ROOT

    results = tmp_path_factory.mktemp("eval-results")
    procs = {}
    for backend in ("transformers", "vllm"):
        procs[backend] = subprocess.run(
            [sys.executable, "-m", "bench.cli", "eval", "tiny-llama", "--tasks", "smoke", "--device", "cpu",
             "--backend", backend, "--results-dir", str(results)],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, **OFFLINE}, timeout=600)
    records = {r.details["engine"]["engine"].split("/")[1]: r for r in iter_records(results)}
    return procs, records


def test_smoke_runs_on_both_backends_with_scores_and_provenance(smoke):
    procs, records = smoke
    for backend in ("transformers", "vllm"):
        assert procs[backend].returncode == 0, procs[backend].stderr[-2000:]
        record = records[backend]
        scores = record.metrics["scores"].value
        assert set(scores) == {"bench_smoke_colors", "bench_smoke_arith"}
        colours = scores["bench_smoke_colors"]
        assert 0 <= colours["acc"] <= 1 and colours["acc_stderr"] > 0
        assert 0 <= scores["bench_smoke_arith"]["exact_match"] <= 1
        engine = record.details["engine"]
        assert engine["lm_eval_version"] == "0.4.13"
        assert engine["task_versions"]["bench_smoke_colors"] == 1.0
        assert engine["n_samples"]["bench_smoke_colors"]["effective"] == 40
        assert record.metrics["limit"].value is None and record.metrics["num_fewshot"].value is None
        assert record.software["lm_eval"] == "0.4.13" and record.software["bench_commit"]


def test_backends_agree_on_multiple_choice_within_stderr(smoke):
    _, records = smoke
    a = records["transformers"].metrics["scores"].value["bench_smoke_colors"]
    b = records["vllm"].metrics["scores"].value["bench_smoke_colors"]
    assert abs(a["acc"] - b["acc"]) <= math.sqrt(a["acc_stderr"] ** 2 + b["acc_stderr"] ** 2)


def test_unreachable_task_data_fails_with_one_line(run_bench, tmp_path):
    proc = run_bench("eval", "tiny-llama", "--tasks", "arc_challenge", "--device", "cpu", "--results-dir",
                     str(tmp_path), env={**OFFLINE, "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "task arc_challenge: data 'allenai/ai2_arc' is not reachable" in proc.stderr
    (record,) = list(iter_records(tmp_path))
    assert record.status == "error" and "arc_challenge" in record.error


def test_synthetic_weights_are_refused_for_evals(run_bench):
    proc = run_bench("eval", "mistral-3-small", "--tasks", "smoke", "--weights", "synthetic", "--device", "cpu")
    assert proc.returncode == 2 and "evals need trained weights" in proc.stderr
