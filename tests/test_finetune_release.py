"""The trained model is gone before the adapter check loads a second base (issue 23, finding 1).

accelerate's mixed-precision wrapping stores bound methods of the model on the model: a reference cycle
that survives `del`. Shown here on a CPU with accelerate itself, on a tiny Llama."""

from __future__ import annotations

import gc
import weakref

import pytest

from bench.scenarios.finetune import release_trained

pytest.importorskip("accelerate")


def _wrapped_tiny_llama():
    from accelerate import Accelerator
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    model = LlamaForCausalLM(config)
    accelerator = Accelerator(cpu=True, mixed_precision="bf16")
    return accelerator.prepare_model(model)


def test_accelerate_wrapping_keeps_a_deleted_model_alive_until_collected():
    gc.disable()  # no automatic collection between `del` and the check
    try:
        model = _wrapped_tiny_llama()
        assert "_original_forward" in vars(model)  # the wrapping this test is about did happen
        ref = weakref.ref(model)
        del model
        assert ref() is not None  # the cycle: deleting the name frees nothing
        assert release_trained(ref) is True
        assert ref() is None
    finally:
        gc.enable()


def test_a_model_still_referenced_is_reported_alive():
    model = _wrapped_tiny_llama()
    assert release_trained(weakref.ref(model)) is False
