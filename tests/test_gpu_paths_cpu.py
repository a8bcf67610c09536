"""The CUDA paths' refusals that a CPU can show (issue 23): a CPU-only llama.cpp build asked for CUDA, and a
model that ended up off its cards while accelerate's map (or its absence) says nothing."""

from __future__ import annotations

import pytest
import torch

from bench.backends.base import EngineSettings
from bench.backends.hf import Placement, placement


def test_a_cpu_only_llama_cpp_build_refuses_cuda_instead_of_running_on_the_cpu(monkeypatch):
    """The refusal follows what the build says of itself; a CPU-only answer is set so every machine checks it."""
    llama_cpp = pytest.importorskip("llama_cpp")
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    from bench.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(EngineSettings(model_path="unused.gguf", device="cuda", quant="q4_k_m"))
    with pytest.raises(RuntimeError, match="cannot offload to a GPU"):
        backend.load()


def _tiny_llama_on_the_cpu():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))


def test_one_card_placement_checks_where_the_parameters_are():
    """On one card the map is bench's own {"": card}: it says nothing; the parameters do."""
    model = _tiny_llama_on_the_cpu()
    one_card = placement("cuda", 1, 0, None)
    model.hf_device_map = dict(one_card.device_map)  # what transformers keeps: the map bench gave
    with pytest.raises(torch.OutOfMemoryError, match="placed part of it on cpu"):
        one_card.check_model(model)


def test_an_auto_map_that_put_everything_on_the_cpu_is_refused():
    model = _tiny_llama_on_the_cpu()
    two_cards = Placement("auto", {0: 2**20, 1: 2**20}, (0, 1))
    with pytest.raises(torch.OutOfMemoryError, match="cpu"):
        two_cards.check_model(model)  # no hf_device_map at all
    model.hf_device_map = {"": "cpu"}
    with pytest.raises(torch.OutOfMemoryError, match="cpu"):
        two_cards.check_model(model)
    placement("cpu", 1, 0, None).check_model(model)  # a CPU run has no cards to spill off
