"""Peak memory, for real: allocations in this process, in a child, in a process named by PID, and on a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import psutil
import pytest

from bench.trackers.memory import PeakMemoryTracker, process_tree_rss

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
