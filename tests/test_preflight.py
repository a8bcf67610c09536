"""Decisions made before a run downloads or starts an engine: pure functions, no GPU, no hub."""

from __future__ import annotations

import errno

import pytest

from bench.errors import UserError
from bench.jobs.preflight import (
    CapPlan,
    check_cards,
    check_driver,
    check_engine,
    check_llamacpp_cap,
    choose_backend,
    plan_cap,
    select_checkpoint,
    vllm_batch_tokens,
)
from bench.launch.emulation import allocator_cap
from bench.launch.gpu_inventory import visible_selection
from bench.weights.hub import free_disk_needed

EVERYTHING = frozenset({"vllm", "bitsandbytes"})


def refusal(call, *args) -> str:
    with pytest.raises(UserError) as err:
        call(*args)
    return str(err.value)


def test_bitsandbytes_quants_go_to_transformers_and_vllm_refuses_them():
    assert choose_backend(None, "nf4") == choose_backend(None, "int8") == "transformers"
    assert choose_backend(None, "bf16") == choose_backend(None, "fp8") == choose_backend(None, "int4") == "vllm"
    assert choose_backend("vllm", "bf16") == "vllm"
    message = refusal(check_engine, "vllm", "nf4", "cuda", "real", EVERYTHING)
    assert "vLLM does not offer" in message and "--backend transformers" in message


@pytest.mark.parametrize("backend,quant,device,weights,installed,expected", [
    ("transformers", "fp8", "cuda", "real", EVERYTHING, "runs bf16, fp16, nf4, int8, not fp8"),
    ("transformers", "int4", "cuda", "real", EVERYTHING, "not int4"),
    ("vllm", "fp8", "cpu", "real", EVERYTHING, "on --device cpu runs bf16, fp16, not fp8"),
    ("vllm", "bf16", "cuda", "real", frozenset({"bitsandbytes"}), "vLLM is not installed"),
    ("transformers", "nf4", "cuda", "real", frozenset({"vllm"}), "needs bitsandbytes"),
    ("transformers", "int8", "cuda", "synthetic", EVERYTHING, "random weights in int8"),
    ("vllm", "int4", "cuda", "synthetic", EVERYTHING, "random weights in int4"),
])
def test_impossible_combinations_are_refused(backend, quant, device, weights, installed, expected):
    assert expected in refusal(check_engine, backend, quant, device, weights, installed)


@pytest.mark.parametrize("backend,quant,device,weights", [
    ("vllm", "bf16", "cuda", "real"), ("vllm", "fp8", "cuda", "synthetic"), ("vllm", "int4", "cuda", "real"),
    ("transformers", "nf4", "cuda", "synthetic"), ("transformers", "int8", "cuda", "real"),
    ("vllm", "bf16", "cpu", "synthetic"),
])
def test_possible_combinations_pass(backend, quant, device, weights):
    check_engine(backend, quant, device, weights, EVERYTHING)


def test_gguf_types_go_to_llama_cpp_which_needs_llama_cpp_python():
    assert choose_backend(None, "q4_k_m") == choose_backend(None, "q8_0") == choose_backend(None, "f16") == "llama.cpp"
    assert choose_backend(None, "bf16") == "vllm"  # bf16 is also a checkpoint format
    with_llama = EVERYTHING | {"llama_cpp"}
    for quant in ("q4_0", "q4_k_m", "q5_k_m", "q6_k", "q8_0", "f16", "bf16"):
        check_engine("llama.cpp", quant, "cpu", "synthetic", with_llama)
    assert "llama-cpp-python is not installed" in refusal(check_engine, "llama.cpp", "q4_k_m", "cpu", "synthetic",
                                                          EVERYTHING)
    assert "not nf4" in refusal(check_engine, "llama.cpp", "nf4", "cpu", "synthetic", with_llama)
    assert "not q4_k_m" in refusal(check_engine, "vllm", "q4_k_m", "cuda", "real", with_llama)


def test_int4_needs_a_prequantized_repository(registry):
    small = registry.model("mistral-3-small")
    awq = select_checkpoint(small, "int4")
    assert awq.format == "awq" and awq.repo != small.repo
    assert select_checkpoint(small, "nf4").repo == small.repo  # quantized while loading the bf16 repository
    message = refusal(select_checkpoint, registry.model("llama-4-scout"), "int4")
    assert "names none" in message and "--quant nf4" in message


def test_fp8_repository_serves_fp8_and_its_bf16_copy_the_rest(registry):
    ministral = registry.model("mistral-3b")
    assert ministral.checkpoint_format == "fp8"
    assert select_checkpoint(ministral, "fp8").repo == "mistralai/Ministral-3-3B-Instruct-2512"
    for quant in ("bf16", "nf4"):
        chosen = select_checkpoint(ministral, quant)
        assert chosen.repo == "mistralai/Ministral-3-3B-Instruct-2512-BF16" and chosen.format == "bf16"
    assert "no public weights" in refusal(select_checkpoint, registry.model("mistral-medium-3"), "bf16")


def test_a_two_card_target_needs_two_cards(registry):
    check_cards(registry.gpu("2x-a100-80gb"), 2)
    check_cards(None, 1)
    assert "needs 2 CUDA cards and this machine shows 1" in refusal(check_cards, registry.gpu("2x-a100-80gb"), 1)


def test_cap_plan_per_card(registry):
    rtx, h100 = registry.gpu("4090"), registry.gpu("h100-80gb")
    plan = plan_cap(rtx, "cuda", "NVIDIA H100 80GB HBM3", 85_520_809_984)
    assert plan.emulated and plan.target_cuda_bytes == int(23.64 * 2**30)
    # The allocator gets the target's CUDA memory less the context the process holds outside it.
    assert allocator_cap(plan.target_cuda_bytes, 500 * 2**20) == int(23.64 * 2**30) - 500 * 2**20
    on_the_card = plan_cap(rtx, "cuda", "NVIDIA GeForce RTX 4090", 25_757_220_864)
    assert not on_the_card.emulated and on_the_card.target_cuda_bytes is None
    assert "cannot emulate" in refusal(plan_cap, h100, "cuda", "NVIDIA GeForce RTX 4090", 25_757_220_864)
    assert not plan_cap(None, "cuda", "NVIDIA H100 80GB HBM3", 85_520_809_984).emulated
    assert not plan_cap(rtx, "cpu", None, None).emulated


def test_every_gpu_profile_caps_below_its_datasheet(registry):
    for card in registry.hardware.values():
        if card.device_class != "edge":
            assert card.cuda_memory_gib is not None, card.id
            assert 0.9 * card.memory_gib < card.cuda_memory_gib <= card.memory_gib, card.id


def test_vllm_batch_tokens_follow_the_target_class(registry):
    assert vllm_batch_tokens(registry.gpu("4090")) == 8192
    assert vllm_batch_tokens(registry.gpu("a100-80gb")) == 8192  # vLLM exempts A100s from the large tier
    assert vllm_batch_tokens(registry.gpu("h100-80gb")) == vllm_batch_tokens(registry.gpu("h200")) == 16384


def test_disk_check():
    free_disk_needed(10 * 10**9, 11 * 10**9, "/cache")
    message = refusal(free_disk_needed, 47 * 10**9, 20 * 10**9, "/cache")
    assert "needs 49.4 GB and /cache has 20.0 GB free" in message


def test_visible_devices_as_cuda_reads_them():
    assert visible_selection(None, 2) == [0, 1]
    assert visible_selection("1", 2) == [1]
    assert visible_selection("", 2) == []
    assert visible_selection("0,7,1", 2) == [0]  # CUDA stops at the first entry it cannot use
    assert visible_selection("GPU-abc", 2) == ["GPU-abc"]


def test_consolidated_weights_are_not_downloaded_twice():
    from bench.weights.hub import duplicate_weights

    assert duplicate_weights(["consolidated.safetensors", "model-00001-of-00002.safetensors",
                              "model-00002-of-00002.safetensors", "params.json"]) == ["consolidated*.safetensors"]
    assert duplicate_weights(["consolidated.safetensors", "params.json"]) == []
    assert duplicate_weights(["model.safetensors"]) == []


def test_a_full_disk_is_reported_as_such():
    from bench.weights.hub import _hub_call

    def fill_disk():
        raise OSError(errno.ENOSPC, "No space left on device")

    message = refusal(_hub_call, "org/model", "main", fill_disk)
    assert "disk filled up" in message and "unreachable" not in message

    def drop_connection():
        raise ConnectionError("connection reset")

    assert "the hub is unreachable" in refusal(_hub_call, "org/model", "main", drop_connection)


def test_a_run_that_fails_under_a_cap_is_still_recorded_as_capped(registry, tmp_path):
    """The child died before reporting its cap: the parent's plan says the run was capped."""
    from bench.jobs.runner import Weights, execute, resolve_model

    rtx = registry.gpu("4090")
    cap = plan_cap(rtx, "cuda", "NVIDIA H100 80GB HBM3", 85_520_809_984)
    record = execute("inference", "tests.helpers.isolate_targets:raises", {},
                     model=resolve_model(registry, "tiny-llama"),
                     weights=Weights("unused", "synthetic", None, None, None), device="cuda", gpu=rtx, config={},
                     results_dir=tmp_path, timeout_s=60, cap=cap)
    assert record.status == "error" and "unexpected keyword argument 'settings'" in record.error
    assert record.hardware["emulated"] is True and record.hardware["target"] == "rtx-4090"
    assert record.hardware["emulation"]["reason"].startswith("capped to rtx-4090")


def test_records_write_home_paths_from_tilde():
    from pathlib import Path

    from bench.jobs.runner import home_as_tilde

    home = str(Path.home())
    config = {"engine": {"model_path": f"{home}/.cache/bench/m", "other": "/opt/x"}, "list": [home]}
    assert home_as_tilde(config) == {"engine": {"model_path": "~/.cache/bench/m", "other": "/opt/x"}, "list": ["~"]}
    assert home_as_tilde(home + "x/y") == home + "x/y"  # a sibling directory that merely starts alike


def test_llama_cpp_is_never_run_under_a_cap_it_cannot_have(registry):
    """n_gpu_layers places layers and caps nothing: a llama.cpp run on a larger card is refused, not recorded
    as capped; on the claimed card itself, or with no target, it runs (issue 23, finding 2)."""
    rtx = registry.gpu("4090")
    capped = plan_cap(rtx, "cuda", "NVIDIA H100 80GB HBM3", 85_520_809_984)
    message = refusal(check_llamacpp_cap, "llama.cpp", capped, rtx)
    assert "cannot be held to rtx-4090's memory" in message and "NVIDIA H100 80GB HBM3" in message
    check_llamacpp_cap("transformers", capped, rtx)  # torch's allocator fraction does cap
    check_llamacpp_cap("llama.cpp", plan_cap(rtx, "cuda", "NVIDIA GeForce RTX 4090", 25_757_220_864), rtx)
    check_llamacpp_cap("llama.cpp", CapPlan(False, None, "no target card"), None)


def test_a_driver_older_than_the_engines_cuda_runtime_is_refused():
    assert "needs NVIDIA driver 580.65.06 or later" in refusal(check_driver, "vllm", "575.57.08", "580.65.06")
    assert "this machine has 550.54.15" in refusal(check_driver, "vllm", "550.54.15", "580.65.06")
    check_driver("vllm", "580.65.06", "580.65.06")
    check_driver("vllm", "590.44.01", "580.65.06")
    check_driver("vllm", None, "580.65.06")  # no NVML: nothing known, nothing refused
    check_driver("transformers", "550.54.15", None)
