"""`bench sweep`: the smoke sweep for real with the local and the Ray executors, failures, skips, validation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.results import iter_records
from tests.conftest import ROOT

SMOKE = "configs/sweeps/smoke.yaml"


def sweep(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench.cli", "sweep", *args], capture_output=True, text=True,
                          cwd=ROOT, env=os.environ.copy(), timeout=timeout)


def cell_keys(directory) -> dict[str, str]:
    return {r.details["labels"]["sweep_cell"]: r.status for r in iter_records(directory)}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("sweep-local")
    return results, sweep(SMOKE, "--results-dir", str(results))


def test_local_executor_runs_every_cell(local_run):
    results, proc = local_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "smoke: 4 ok, 0 out of memory, 0 failed, 0 skipped, 0 refuted by arithmetic (not run) of 4" in proc.stdout
    keys = cell_keys(results)
    assert len(keys) == 4 and set(keys.values()) == {"ok"}
    assert {r.kind for r in iter_records(results)} == {"inference", "finetune", "eval"}
    assert "[4/4] done 4" in proc.stderr  # the progress line


def test_second_run_skips_what_is_done(local_run):
    results, _ = local_run
    before = sorted(p.name for p in results.iterdir())
    proc = sweep(SMOKE, "--results-dir", str(results))
    assert proc.returncode == 0 and "0 ok, 0 out of memory, 0 failed, 4 skipped, 0 refuted" in proc.stdout
    assert sorted(p.name for p in results.iterdir()) == before


def test_ray_executor_gives_the_same_cells(local_run, tmp_path):
    pytest.importorskip("ray")
    results, _ = local_run
    ray_results = tmp_path / "ray"
    proc = sweep(SMOKE, "--executor", "ray", "--results-dir", str(ray_results))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cell_keys(ray_results) == cell_keys(results)


def test_a_failing_cell_does_not_stop_the_others(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("""id: mixed
device: cpu
matrix:
  - kind: inference
    models: [tiny-llama]
    backends: [transformers]
    options: {batch: 2, prompt_len: 8, output_len: 4, iterations: 1, min_duration: 60, timeout: 6}
  - kind: inference
    models: [tiny-mixtral]
    backends: [transformers]
    options: {batch: 2, prompt_len: 8, output_len: 4, iterations: 1, min_duration: 0.1}
""")
    proc = sweep(str(path), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 1 and "1 ok, 0 out of memory, 1 failed" in proc.stdout
    statuses = {r.model.id: r.status for r in iter_records(tmp_path / "r")}
    assert statuses == {"tiny-llama": "timeout", "tiny-mixtral": "ok"}


def test_sweep_files_are_validated(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: bad\ndevice: cpu\nmatrix:\n  - kind: finetune\n    models: [tiny-llama]\n"
                    "    recipes: [lora-sfft]\n")
    proc = sweep(str(path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"{path}: matrix.0.recipes.0: unknown recipe 'lora-sfft'; did you mean: lora-sft" in proc.stderr
    path.write_text("id: bad\nmatrix:\n  - kind: inference\n    modles: [tiny-llama]\n")
    proc = sweep(str(path))
    assert proc.returncode == 2 and "matrix.0.modles: unknown field" in proc.stderr


def test_nightly_expands_from_claims_with_multi_gpu_cells(registry):
    from pathlib import Path

    from bench.sweep import expand, load_sweep

    cells = expand(load_sweep(ROOT / Path("configs/sweeps/nightly.yaml"), registry), registry)
    assert len({c.key for c in cells}) == len(cells)
    multi = [c for c in cells if c.gpu == "2x-a100-80gb"]
    assert {c.model for c in multi} == {"mixtral-8x22b", "mistral-medium-3"} and all(c.gpus_needed == 2 for c in multi)
    assert any(c.kind == "finetune" and c.model == "llama-4-scout" and c.recipe == "qlora-sft" for c in cells)
    assert not any(c.model == "mistral-medium-3" and c.weights != "synthetic" for c in cells)  # no public weights
