"""The GPU battery, checked without a GPU: every cell passes bench's pre-flight on the machine it is
written for (one CUDA card, bitsandbytes, no vLLM), and its expectations agree with the arithmetic.
On a CUDA machine the cap check itself runs (marked `gpu`)."""

from __future__ import annotations

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
    outcome = run_isolated("bench.calibration.cap_check:allocate_until_oom", {"target_cuda_bytes": target.cuda_memory_bytes}, 600)
    assert outcome.status == "ok", outcome.error
    assert outcome.value["within_tolerance"], outcome.value
