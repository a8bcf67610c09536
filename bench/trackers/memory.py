"""Peak memory of a measurement, in the device's view and the allocator's.

CPU: the RSS of this process plus all its descendants, sampled every 10 ms (vLLM's
engine runs in child processes, so this process alone would miss it), and the
kernel's exact peak for this process (`ru_maxrss`).

CUDA: NVML's per-process figure for the PIDs of this process tree. Inside some
containers NVML reports host PIDs and per-process figures read as 0: the tracker
then falls back to the device's used memory minus a baseline taken before the work,
and says which source it used. The allocator's view (torch's max allocated and
reserved) is reported beside it; for vLLM, whose engine allocates in another process
and pre-reserves its KV cache, it is small by design.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Any

import psutil

INTERVAL_S = 0.01


def process_tree(pid: int | None = None) -> list[psutil.Process]:
    root = psutil.Process(pid or os.getpid())
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [root]


def process_tree_rss(pid: int | None = None) -> int:
    total = 0
    for proc in process_tree(pid):
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


class _Nvml:
    """The NVML device matching torch's current device, by PCI bus id."""

    def __init__(self) -> None:
        import pynvml
        import torch

        pynvml.nvmlInit()
        self.nvml = pynvml
        bus_id = torch.cuda.get_device_properties(torch.cuda.current_device()).pci_bus_id
        self.handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode() if isinstance(bus_id, str) else bus_id)

    def device_used(self) -> int:
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def process_used(self, pids: set[int]) -> int:
        procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid in pids)


class PeakMemoryTracker:
    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak_tree = 0
        self._peak_process_gpu = 0
        self._peak_device_gpu = 0
        self._samples = 0
        self._nvml: _Nvml | None = None
        self._baseline_rss = 0
        self._baseline_gpu = 0
        self._torch_used: Any = None  # callable giving (total - free) when NVML is missing

    def __enter__(self) -> PeakMemoryTracker:
        self._baseline_rss = process_tree_rss()
        if self.device == "cuda":
            self._start_cuda()
        self._thread = threading.Thread(target=self._sample_loop, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._sample()
        finally:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()

    def _start_cuda(self) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats()
        try:
            self._nvml = _Nvml()
            self._baseline_gpu = self._nvml.device_used()
        except Exception:  # no pynvml or no NVML: torch's view of the whole device instead
            self._nvml = None

            def used() -> int:
                free, total = torch.cuda.mem_get_info()
                return total - free

            self._torch_used = used
            self._baseline_gpu = used()

    def _sample_loop(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        self._samples += 1
        self._peak_tree = max(self._peak_tree, process_tree_rss())
        if self.device != "cuda":
            return
        try:
            if self._nvml is not None:
                pids = {p.pid for p in process_tree()}
                self._peak_process_gpu = max(self._peak_process_gpu, self._nvml.process_used(pids))
                self._peak_device_gpu = max(self._peak_device_gpu, self._nvml.device_used())
            elif self._torch_used is not None:
                self._peak_device_gpu = max(self._peak_device_gpu, self._torch_used())
        except Exception:  # a failed sample must not end sampling
            pass

    def result(self) -> dict[str, Any]:
        self_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result: dict[str, Any] = {"baseline_bytes": self._baseline_rss, "samples": self._samples,
                                  "peak_rss_bytes": max(self._peak_tree, self_peak)}
        if self.device != "cuda":
            result.update(peak_memory_bytes=result["peak_rss_bytes"], peak_memory_source="rss-process-tree")
            return result
        if self._nvml is not None and self._peak_process_gpu > 0:
            result.update(peak_memory_bytes=self._peak_process_gpu, peak_memory_source="nvml-process")
        elif self._nvml is not None:
            result.update(peak_memory_bytes=self._peak_device_gpu - self._baseline_gpu,
                          peak_memory_source="nvml-device-minus-baseline")
        else:
            result.update(peak_memory_bytes=self._peak_device_gpu - self._baseline_gpu,
                          peak_memory_source="torch-mem-get-info-minus-baseline")
        if "torch" in sys.modules:
            import torch

            result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
            result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
        return result
