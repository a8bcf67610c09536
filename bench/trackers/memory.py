"""Peak memory of a measurement, in the device's view and the allocator's.

CPU: the RSS summed over this process and all its descendants at each sample (vLLM's
engine runs in child processes, so this process alone would miss it), and the
kernel's exact peak for this process (`ru_maxrss`), which 10 ms sampling can miss.
Pages shared between processes count once per process, so the sum over-states a
little; PSS would not, but reading smaps every 10 ms costs far more.

CUDA: NVML's per-process figure for the PIDs of this process tree. Inside
containers NVML reports host PIDs, so none of ours match and the figure reads 0:
the tracker then falls back to the device's used memory minus a baseline taken at
enter (which includes every other process on the card), and says which source it
used. torch's allocator view (max allocated and reserved) is reported beside it;
for vLLM, whose engine allocates in another process, it is small by design.

This process's own card memory is either counted (the engine runs here: the real card holds
that context too) or left out of the per-process sum (`own_context="exclude"`: the engine runs
in other processes, and this context is bench's, which a user of the engine would not have),
its peak still recorded beside the figure; the record says which. Memory this process
holds outside torch's allocator is read at both ends, so kernels loaded lazily during the
run (outside any cap) show as `outside_allocator_growth_bytes`. Managed memory
(bitsandbytes' paged optimizer state) migrates between host and card and is not reliably
in either figure: a stated limit, not a measured term.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterable
from typing import Any

import psutil

from bench.launch.gpu_inventory import NvmlCard

INTERVAL_S = 0.01
TREE_EVERY = 10  # samples between rescans for new descendants: a rescan reads every /proc entry (~1 ms per 75)


def process_tree(roots: Iterable[int]) -> list[psutil.Process]:
    """The live processes among `roots` and all their descendants, each once."""
    tree: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in (root, *root.children(recursive=True)):
                tree.setdefault(proc.pid, proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(tree.values())


def _rss(procs: Iterable[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def process_tree_rss(pid: int | None = None) -> int:
    """RSS of a process (this one by default) plus all its descendants, in bytes."""
    return _rss(process_tree([os.getpid() if pid is None else pid]))


def _self_maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class _TorchDevice:
    """Without nvidia-ml-py: the device's used memory as the CUDA runtime reports it (creates a context)."""

    def __init__(self, index: int) -> None:
        import torch

        self.torch, self.index = torch, index

    def device_used(self) -> int:
        free, total = self.torch.cuda.mem_get_info(self.index)
        return total - free

    def process_used(self, pids: set[int]) -> int:
        return 0

    def processes_listed(self, other_than: set[int]) -> int:
        return 0

    def close(self) -> None:
        """torch holds no handle to release (NVML's counterpart shuts NVML down)."""


class _Cards:
    """Several cards read as one: a run spread over a multi-card target uses all of them."""

    def __init__(self, cards: list[NvmlCard | _TorchDevice]) -> None:
        self.cards = cards

    def device_used(self) -> int:
        return sum(card.device_used() for card in self.cards)

    def process_used(self, pids: set[int]) -> int:
        return sum(card.process_used(pids) for card in self.cards)

    def processes_listed(self, other_than: set[int]) -> int:
        return sum(card.processes_listed(other_than) for card in self.cards)

    def close(self) -> None:
        for card in self.cards:
            card.close()


OWN_CONTEXT = ("count", "exclude")


def counted_pids(tree: set[int], own: int, own_context: str) -> set[int]:
    """The PIDs whose NVML figures make the per-process peak: the whole tree, or all but this process."""
    return tree - {own} if own_context == "exclude" else set(tree)


def cuda_peak(*, peak_process: int, peak_device: int, baseline_device: int, own_peak: int,
              own_context: str, nvml_unavailable: str | None, pids_listed: int) -> dict[str, Any]:
    """The CUDA peak and how it was read, from the sampled figures.

    NVML's per-process sum over the counted PIDs (`counted_pids`) where it saw any; `own_peak` is this
    process's own peak, counted in that sum or, with "exclude", recorded beside it. Else the card's used
    memory less the baseline taken at the start, which already leaves this process's context out (and
    counts every other process on the card); `pids_listed` > 0 there means NVML listed other processes,
    none of our tree: a container's PID namespace.
    """
    out: dict[str, Any] = {}
    if nvml_unavailable is not None:
        source, peak = "torch-mem-get-info-minus-baseline", peak_device - baseline_device
        out["nvml_unavailable"] = nvml_unavailable
        out["own_context"] = "in the baseline (not counted)"
    elif peak_process > 0:
        source, peak = "nvml-process", peak_process
        out["own_context"] = "excluded" if own_context == "exclude" else "counted"
        out["own_process_peak_bytes"] = own_peak
    else:
        source, peak = "nvml-device-minus-baseline", peak_device - baseline_device
        out["own_context"] = "in the baseline (not counted)"
        if pids_listed:
            out["pid_namespace"] = ("NVML listed processes on the card but none of this process tree (a "
                                    "container's PID namespace): the figure is the card's used memory less the "
                                    "baseline, which also counts every other process on the card")
    out.update(peak_memory_bytes=max(peak, 0), peak_memory_source=source)
    return out


class PeakMemoryTracker:
    """``with PeakMemoryTracker("cuda") as tracker: ...`` then ``tracker.result()``.

    `pids` adds processes (and their descendants) that are not this process's
    descendants, e.g. an engine started by a launcher; this process's tree is always counted.
    `cards` is how many CUDA cards the run uses (from the current one on, as a multi-card
    target spreads over them); their figures are summed.
    """

    def __init__(self, device: str = "cpu", pids: Iterable[int] | None = None, cards: int = 1,
                 own_context: str = "count") -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
        if own_context not in OWN_CONTEXT:
            raise ValueError(f"own_context must be one of {', '.join(OWN_CONTEXT)}, not {own_context!r}")
        self.device = device
        self._own_context_mode = own_context
        self._own_peak = self._outside_at_enter = 0
        self._pids_listed = 0
        self._cards = cards
        self._roots = [os.getpid(), *(pids or ())]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: list[psutil.Process] = []
        self._samples = self._errors = 0
        self._last_error: str | None = None
        self._peak_rss = self._baseline_rss = self._maxrss_at_enter = 0
        self._gpu: _Cards | None = None
        self._torch: Any = None
        self._gpu_indices: list[int] = []
        self._nvml_unavailable: str | None = None
        self._peak_gpu_process = self._peak_gpu_device = self._baseline_gpu = 0
        self._result: dict[str, Any] | None = None

    def __enter__(self) -> PeakMemoryTracker:
        if self.device == "cuda":
            self._start_cuda()
        self._maxrss_at_enter = _self_maxrss_bytes()
        self._procs = process_tree(self._roots)
        self._baseline_rss = _rss(self._procs)
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join()
            self._sample()  # the state at the end, taken after the thread so no two writers race
            self._result = self._summarise()
        finally:
            if self._gpu is not None:
                self._gpu.close()

    def _start_cuda(self) -> None:
        import torch

        self._torch = torch
        first = torch.cuda.current_device()
        self._gpu_indices = list(range(first, first + self._cards))
        cards: list[NvmlCard | _TorchDevice] = []
        for index in self._gpu_indices:
            torch.cuda.reset_peak_memory_stats(index)
            try:
                cards.append(NvmlCard(index))
            except Exception as exc:  # no nvidia-ml-py, no NVML library, or no card matched: the runtime's view
                self._nvml_unavailable = f"{type(exc).__name__}: {exc}"
                cards.append(_TorchDevice(index))
        self._gpu = _Cards(cards)
        self._baseline_gpu = self._gpu.device_used()
        self._outside_at_enter = self._outside_allocator()

    def _outside_allocator(self) -> int:
        """This process's card memory outside torch's allocator (context, kernels, libraries): NVML's figure
        for this process less what the allocator reserved; 0 where NVML has no figure for this process."""
        own = self._gpu.process_used({os.getpid()}) if self._gpu is not None else 0
        reserved = sum(self._torch.cuda.memory_reserved(i) for i in self._gpu_indices)
        return own - reserved if own else 0

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        """One sample; a failing source is counted and reported, never allowed to end the sampling."""
        try:
            if self._samples % TREE_EVERY == 0:
                self._procs = process_tree(self._roots)
            self._samples += 1
            self._peak_rss = max(self._peak_rss, _rss(self._procs))
            if self._gpu is not None:
                self._peak_gpu_device = max(self._peak_gpu_device, self._gpu.device_used())
                own = os.getpid()
                pids = counted_pids({p.pid for p in self._procs}, own, self._own_context_mode)
                self._peak_gpu_process = max(self._peak_gpu_process, self._gpu.process_used(pids))
                self._own_peak = max(self._own_peak, self._gpu.process_used({own}))
                self._pids_listed = max(self._pids_listed, self._gpu.processes_listed({own}))
        except Exception as exc:  # the sampler must outlive any one bad read
            self._errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"

    def _summarise(self) -> dict[str, Any]:
        # ru_maxrss is the process's lifetime peak: it speaks for this block only if it grew during it.
        self_peak = _self_maxrss_bytes()
        peak_rss = max(self._peak_rss, self_peak if self_peak > self._maxrss_at_enter else 0)
        result: dict[str, Any] = {"peak_memory_bytes": peak_rss, "peak_memory_source": "rss-process-tree",
                                  "baseline_bytes": self._baseline_rss, "peak_rss_bytes": peak_rss,
                                  "samples": self._samples, "sampler_errors": self._errors}
        if self._last_error:
            result["last_sampler_error"] = self._last_error
        if self.device == "cuda":
            result.update(self._summarise_cuda())
        return result

    def _summarise_cuda(self) -> dict[str, Any]:
        result: dict[str, Any] = {"baseline_bytes": self._baseline_gpu, "rss_baseline_bytes": self._baseline_rss,
                                  "peak_device_used_bytes": self._peak_gpu_device}
        scopes = sorted({card.scope for card in self._gpu.cards if isinstance(card, NvmlCard)})
        if scopes:
            result["nvml_scope"] = scopes  # "parent-gpu": a MIG instance read as its whole GPU
        result.update(cuda_peak(peak_process=self._peak_gpu_process, peak_device=self._peak_gpu_device,
                                baseline_device=self._baseline_gpu, own_peak=self._own_peak,
                                own_context=self._own_context_mode, nvml_unavailable=self._nvml_unavailable,
                                pids_listed=self._pids_listed))
        if self._outside_at_enter:
            outside = self._outside_allocator()
            result.update(outside_allocator_bytes_at_enter=self._outside_at_enter,
                          outside_allocator_bytes_at_exit=outside,
                          outside_allocator_growth_bytes=outside - self._outside_at_enter)
        result.update(peak_allocated_bytes=sum(self._torch.cuda.max_memory_allocated(i) for i in self._gpu_indices),
                      peak_reserved_bytes=sum(self._torch.cuda.max_memory_reserved(i) for i in self._gpu_indices),
                      cards=len(self._gpu_indices))
        return result

    def result(self) -> dict[str, Any]:
        """The measurement, ready once the ``with`` block has ended."""
        if self._result is None:
            raise RuntimeError("PeakMemoryTracker.result() is ready after the with block ends")
        return dict(self._result)
