"""Peak memory, for real: allocations in this process, in a child, in a process named by PID, and on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import psutil
import pytest

from bench.trackers.memory import PeakMemoryTracker, counted_pids, cuda_peak, process_tree_rss

torch = pytest.importorskip("torch")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MiB = 2**20
# Allocates and touches 300 MiB after `delay` seconds, then holds it for a second.
ALLOCATE = ("import time; time.sleep({delay}); b = bytearray(300 * 2**20); "
            "b[::4096] = b'x' * len(b[::4096]); time.sleep(1)")


def test_an_allocation_in_this_process_raises_the_peak():
    with PeakMemoryTracker("cpu") as tracker:
        block = bytearray(200 * MiB)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
        time.sleep(0.05)
        del block
    result = tracker.result()
    assert result["peak_memory_source"] == "rss-process-tree"
    assert result["peak_memory_bytes"] - result["baseline_bytes"] >= 150 * MiB
    assert result["samples"] > 0 and result["sampler_errors"] == 0


def test_a_child_process_is_counted():
    with PeakMemoryTracker("cpu") as tracker:
        subprocess.run([sys.executable, "-c", ALLOCATE.format(delay=0)], check=True)
    result = tracker.result()
    assert result["peak_memory_bytes"] - result["baseline_bytes"] >= 250 * MiB


def test_a_process_named_by_pid_is_counted():
    # The launcher exits at once, so its child is re-parented away from us: only `pids` brings it in.
    launcher = (f"import subprocess, sys; code = {ALLOCATE.format(delay=0.5)!r}; "
                "print(subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL, "
                "stderr=subprocess.DEVNULL).pid)")
    out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, check=True)
    orphan = psutil.Process(int(out.stdout))
    assert orphan.ppid() != os.getpid()
    with PeakMemoryTracker("cpu", pids=[orphan.pid]) as tracker:
        orphan.wait(timeout=30)
    result = tracker.result()
    assert result["peak_memory_bytes"] - result["baseline_bytes"] >= 250 * MiB


def test_an_exception_in_the_body_still_stops_the_sampler():
    tracker = PeakMemoryTracker("cpu", pids=[2**22 + 1])  # no such process: skipped, not fatal
    with pytest.raises(RuntimeError, match="the measurement failed"):
        with tracker:
            time.sleep(0.05)
            raise RuntimeError("the measurement failed")
    assert not tracker._thread.is_alive()
    assert tracker.result()["samples"] > 0 and tracker.result()["sampler_errors"] == 0


def test_result_is_refused_before_the_block_ends():
    with PeakMemoryTracker("cpu") as tracker:
        with pytest.raises(RuntimeError):
            tracker.result()


def test_process_tree_rss_counts_this_process():
    assert process_tree_rss() >= psutil.Process().memory_info().rss > 0


@pytest.mark.gpu
@needs_cuda
def test_a_cuda_allocation_shows_in_both_views():
    with PeakMemoryTracker("cuda") as tracker:
        x = torch.empty(512 * MiB, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        time.sleep(0.05)
        del x
    result = tracker.result()
    assert result["peak_allocated_bytes"] >= 512 * MiB
    assert result["peak_reserved_bytes"] >= 512 * MiB
    assert result["peak_memory_bytes"] >= 512 * MiB
    if importlib.util.find_spec("pynvml"):  # NVML matched torch's card by PCI bus id
        assert result["peak_memory_source"] in ("nvml-process", "nvml-device-minus-baseline")
    else:
        assert result["peak_memory_source"] == "torch-mem-get-info-minus-baseline"
    assert result["sampler_errors"] == 0


def _peak(**figures):
    base = dict(peak_process=0, peak_device=0, baseline_device=0, own_peak=0, own_context="count",
                nvml_unavailable=None, pids_listed=0)
    return cuda_peak(**{**base, **figures})


def test_the_measuring_processs_own_context_is_counted_or_excluded_and_said():
    """vLLM's engine runs in child processes: the measuring process's context (~0.5 GiB) is bench's and is
    left out of the sum; where the engine runs in the measuring process, the real card holds that context
    too (issue 23, finding 4)."""
    tree = {100, 201, 202}
    assert counted_pids(tree, 100, "exclude") == {201, 202}
    assert counted_pids(tree, 100, "count") == tree
    excluded = _peak(peak_process=8500 * MiB, own_peak=500 * MiB, own_context="exclude")
    assert excluded["peak_memory_bytes"] == 8500 * MiB and excluded["own_context"] == "excluded"
    assert excluded["own_process_peak_bytes"] == 500 * MiB and excluded["peak_memory_source"] == "nvml-process"
    counted = _peak(peak_process=9000 * MiB, own_peak=500 * MiB)
    assert counted["peak_memory_bytes"] == 9000 * MiB and counted["own_context"] == "counted"
    with pytest.raises(ValueError, match="own_context"):
        PeakMemoryTracker("cpu", own_context="ignore")


def test_a_container_pid_namespace_falls_back_to_the_card_and_says_so():
    figures = dict(peak_device=20_000 * MiB, baseline_device=1_000 * MiB)
    hidden = _peak(**figures, pids_listed=2)  # NVML lists processes, none with our PIDs
    assert hidden["peak_memory_source"] == "nvml-device-minus-baseline"
    assert hidden["peak_memory_bytes"] == 19_000 * MiB and "PID namespace" in hidden["pid_namespace"]
    assert hidden["own_context"] == "in the baseline (not counted)"
    assert "pid_namespace" not in _peak(**figures)  # nothing listed at all: no namespace to blame
    no_nvml = _peak(**figures, nvml_unavailable="ImportError: pynvml")
    assert no_nvml["peak_memory_source"] == "torch-mem-get-info-minus-baseline"


@pytest.mark.gpu
@needs_cuda
def test_on_a_card_the_own_process_is_excluded_and_its_peak_kept():
    """With the engine elsewhere (here: a child holding 256 MiB), this process's context is not in the peak."""
    torch.ones(1, device="cuda").sum().item()  # this process's context exists before the block, as in a run
    child = ("import time, torch; x = torch.empty(256 * 2**20, dtype=torch.uint8, device='cuda'); "
             "torch.cuda.synchronize(); time.sleep(3)")
    with PeakMemoryTracker("cuda", own_context="exclude") as tracker:
        subprocess.run([sys.executable, "-c", child], check=True, timeout=120)
    result = tracker.result()
    if result["peak_memory_source"] == "nvml-process":
        assert result["own_context"] == "excluded" and result["own_process_peak_bytes"] > 0
        # The child's context and its 256 MiB; not this process's context as well.
        assert 256 * MiB <= result["peak_memory_bytes"]
        assert "outside_allocator_growth_bytes" in result

