"""The GPU battery, checked without a GPU: every cell passes bench's pre-flight on the machine it is
written for (one CUDA card, bitsandbytes, no vLLM), its expectations agree with the arithmetic, and
`scripts/gpu_battery.sh --plan` prints every cell and checks the machine (here: no driver, not ready).
On a CUDA machine the cap check itself runs (marked `gpu`), judged by what NVML reports."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from bench.calibration.cap_check import judge
from bench.estimate.plan import PlanRequest, Subject, memory_for
from bench.jobs.sweep import arithmetic_refutation, expand, load_sweep, preflight_cell
from tests.helpers.paths import ROOT

BATTERY = ROOT / "configs/sweeps/gpu-battery.yaml"
BATTERY_MACHINE = frozenset({"bitsandbytes"})  # the device machine: torch, transformers, bitsandbytes; no vLLM


@pytest.fixture(scope="module")
def cells(registry):
    return expand(load_sweep(BATTERY, registry), registry)


def test_every_battery_cell_passes_preflight(cells, registry):
    assert len(cells) == 7
    for cell in cells:
        preflight_cell(cell, registry, BATTERY_MACHINE, visible_cards=1)
        assert arithmetic_refutation(cell, registry) is None, cell.label()  # random weights always run


def test_battery_cells_need_no_vllm_and_no_download(cells):
    assert all(c.weights == "synthetic" and c.backend in ("transformers", None) for c in cells)


def test_battery_expectations_agree_with_the_estimate(cells, registry):
    """A cell expected to run out of memory is one the estimate says does not fit, and the reverse."""
    checked = 0
    for cell in cells:
        if cell.kind != "inference" or cell.expect is None or cell.gpu is None:
            continue
        gpu = registry.gpu(cell.gpu)
        o = cell.options
        length = max(o["prompt_len"] + o["output_len"], o.get("context") or 0)
        memory = memory_for(PlanRequest(Subject.from_spec(registry.model(cell.model)), gpu, batch=o["batch"]),
                            cell.quant, length, gpu)
        assert (memory.total_bytes <= gpu.cuda_memory_bytes) == (cell.expect == "ok"), cell.label()
        checked += 1
    assert checked == 4


def test_cap_check_tolerance():
    target = int(23.64 * 2**30)
    assert judge(int(target * 0.985), target)["within_tolerance"]
    assert not judge(int(target * 0.97), target)["within_tolerance"]
    assert judge(target, target)["relative_error"] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cap_holds_a_card_to_the_target(registry):
    from bench.launch.isolate import run_isolated

    target = registry.gpu("rtx-4090")
    outcome = run_isolated("bench.calibration.cap_check:allocate_until_oom",
                           {"target_cuda_bytes": target.cuda_memory_bytes}, 600)
    assert outcome.status == "ok", outcome.error
    assert outcome.value["within_tolerance"], outcome.value
    if importlib.util.find_spec("pynvml"):  # judged by the card's own figure, not by reading back the cap
        assert outcome.value["judged_by"].startswith("nvml"), outcome.value


def _plan_script():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_battery_plan
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return gpu_battery_plan


def test_plan_prints_every_cell_with_target_cap_budget_floor_and_expectation(cells):
    proc = subprocess.run(["bash", "scripts/gpu_battery.sh", "--plan"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"{len(cells)} cells" in out
    for cell in cells:
        line = out.split(f"- {cell.label()}\n", 1)[1].splitlines()[0]
        assert f"target {cell.gpu or '-'};" in line and "driver floor" in line
        assert f"expect {cell.expect or 'decides a claim'}" in line
        if cell.gpu:
            assert "allocator fraction (" in line and "measured context" in line
    assert "target rtx-4090; cap 23.64 GiB CUDA" in out and "target edge-4gb; cap 4.00 GiB CUDA" in out
    if not torch.cuda.is_available():
        assert "[NO] NVIDIA driver" in out and "not ready for the GPU run" in out


def test_plan_budgets_a_vllm_cell_by_vllms_rule(registry):
    from bench.jobs.sweep import Cell

    plan = _plan_script()
    cell = Cell(kind="inference", model="mistral-3-small", device="cuda", gpu="rtx-4090", backend="vllm")
    row = plan.cell_plan(cell, registry.gpu("rtx-4090"), 80 * 2**30)
    assert "gpu_memory_utilization ceil(23.64 GiB x 0.92) = 21.75 GiB = 0.2719 of this card" in row["engine budget"]


def test_machine_checks_find_an_old_driver_mig_and_an_empty_visible_list():
    from tests.helpers.fake_nvml import Device, FakeNvml

    plan = _plan_script()
    gib = 2**30
    card = Device("NVIDIA H100 80GB HBM3", "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6", 80 * gib)
    good = plan.machine_checks(FakeNvml([card], driver="580.82.07"), None, {"580.65.06"})
    assert all(passed for _, passed, _ in good), good
    old = dict((name, (passed, found)) for name, passed, found in
               plan.machine_checks(FakeNvml([card], driver="550.54.15"), "GPU-0000", {"580.65.06"}))
    assert old["NVIDIA driver"] == (False, "550.54.15 (needs 580.65.06 or later)")
    assert old["CUDA_VISIBLE_DEVICES"] == (False, "'GPU-0000': 0 device(s) visible")
    sliced = Device("NVIDIA A100-SXM4-80GB", "GPU-1a2b", 80 * gib, mig=[Device("MIG 3g.40gb", "MIG-aa", 40 * gib)])
    mig = dict((name, passed) for name, passed, _ in plan.machine_checks(FakeNvml([sliced]), None, set()))
    assert mig == {"NVIDIA driver": True, "MIG": False, "CUDA_VISIBLE_DEVICES": True}
    assert plan.machine_checks(None, None, set())[0][1] is False
