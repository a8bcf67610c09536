"""`bench sweep`: the smoke sweep for real with the local and the Ray executors, failures, skips, validation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.records.store import iter_records
from tests.helpers.paths import ROOT

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

    from bench.jobs.sweep import expand, load_sweep

    cells = expand(load_sweep(ROOT / Path("configs/sweeps/nightly.yaml"), registry), registry)
    assert len({c.key for c in cells}) == len(cells)
    multi = [c for c in cells if c.gpu == "2x-a100-80gb"]
    assert {c.model for c in multi} == {"mixtral-8x22b", "mistral-medium-3"} and all(c.gpus_needed == 2 for c in multi)
    assert any(c.kind == "finetune" and c.model == "llama-4-scout" and c.recipe == "qlora-sft" for c in cells)
    assert not any(c.model == "mistral-medium-3" and c.weights != "synthetic" for c in cells)  # no public weights


def test_real_weight_cells_that_arithmetic_refutes_are_not_run(registry):
    from bench.jobs.sweep import arithmetic_refutation, expand, load_sweep

    cells = expand(load_sweep(ROOT / "configs/sweeps/nightly.yaml", registry), registry)
    refuted = {(c.kind, c.model, c.gpu, c.quant, c.weights): arithmetic_refutation(c, registry) for c in cells}
    # Mixtral 8x22B in bf16 (263 GiB) on two 80 GB cards, Maverick's QLoRA on a 4090: not downloaded.
    assert "> 2x-a100-80gb's 160.0 GiB" in refuted[("inference", "mixtral-8x22b", "2x-a100-80gb", "bf16", None)]
    assert any(reason and m == "llama-4-maverick" and k == "finetune" for (k, m, _, _, _), reason in refuted.items())
    assert refuted[("inference", "mixtral-8x22b", "2x-a100-80gb", "fp8", None)] is None  # 131 GiB: measure it
    # Random weights download nothing: the same shape still runs (its out-of-memory checks the cap).
    assert all(reason is None for (_, _, _, _, weights), reason in refuted.items() if weights == "synthetic")


def test_one_runner_per_card_takes_the_cards_cells_and_the_unpinned_runner_the_rest(registry):
    from bench.jobs.sweep import expand, load_sweep, select_runner_cells

    spec = load_sweep(ROOT / "configs/sweeps/nightly.yaml", registry)
    cells = expand(spec, registry)
    evals = [c for c in cells if c.kind == "eval"]
    assert evals and all(c.gpu is None for c in evals)
    h100, left_out = select_runner_cells(spec, cells, "h100-80gb")
    assert left_out == 0 and {c.key for c in evals} <= {c.key for c in h100}  # on the H100 runner, not nowhere
    rtx, _ = select_runner_cells(spec, cells, "rtx-4090")
    assert rtx and all(c.gpu == "rtx-4090" for c in rtx)
    no_default, left_out = select_runner_cells(spec.model_copy(update={"unpinned_runner": None}), cells, "rtx-4090")
    assert left_out == len([c for c in cells if c.gpu is None]) and no_default == rtx


def test_sweep_files_refuse_vllm_bitsandbytes_cells(tmp_path):
    path = tmp_path / "nf4.yaml"
    path.write_text("id: nf4\nmatrix:\n  - kind: inference\n    models: [mistral-3-small]\n    backends: [vllm]\n"
                    "    quants: [nf4]\n")
    proc = sweep(str(path))
    assert proc.returncode == 2 and "matrix.0: --quant nf4 is bitsandbytes, which vLLM does not offer" in proc.stderr


def test_a_cell_that_ends_other_than_expected_fails_the_sweep(tmp_path):
    path = tmp_path / "expect.yaml"
    path.write_text("id: expect\ndevice: cpu\nmatrix:\n  - kind: inference\n    models: [tiny-llama]\n"
                    "    backends: [transformers]\n    expect: oom\n"
                    "    options: {batch: 1, prompt_len: 8, output_len: 2, iterations: 1, min_duration: 0}\n")
    proc = sweep(str(path), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 1 and "1 ok" in proc.stdout
    assert "unexpected: inference tiny-llama transformers/bf16: expected oom, got ok" in proc.stderr
