"""The training estimate against the trainer `bench finetune` runs, measured on this CPU.

Each term is held to torch's allocator (bench.calibration.training_probe) on a small Llama shape, and
the plain Hugging Face losses bench finetune does not run to the same allocator on their own
(bench.calibration.loss_probe), not to the estimator's own formula; the plan-level tests check the recipe
settings reach the estimate and that impossible combinations are refused.
"""

from __future__ import annotations

import pytest

from bench.config.strict import ValidationError
from bench.estimate.params import count_params
from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.estimate.training import hf_loss_bytes_per_token, training_memory

# tiny-llama's two layers with a vocabulary large enough that the loss's buffers are a term of their own;
# one warm-up step and one measured step of 128 tokens keep each case to seconds.
SHAPE = {"vocab_size": 4096}


def _setup(registry, recipe_id: str, **overrides):
    arch = registry.model("tiny-llama").architecture.model_copy(update=SHAPE)
    recipe = registry.recipe(recipe_id).model_copy(update={
        "sequence_length": 128, "micro_batch": 1, "gradient_accumulation": 1, "full_precision": "bf16", **overrides})
    return arch, recipe


@pytest.mark.parametrize("recipe_id, checkpointing", [("lora-sft", True), ("lora-sft", False), ("full-sft", True)])
def test_terms_match_the_cpu_measurement(registry, recipe_id, checkpointing):
    from bench.calibration.training_probe import measure_training

    arch, recipe = _setup(registry, recipe_id, gradient_checkpointing=checkpointing)
    measured = measure_training(arch, recipe, steps=2)
    est = training_memory(arch, count_params(arch), recipe, 0, None, device="cpu")
    assert est.weights_bytes == pytest.approx(measured.weights_bytes, rel=0.01)
    assert est.trainable_bytes == pytest.approx(measured.trainable_bytes, rel=0.01)
    # above what is resident when a step begins: weights, adapters and optimizer state (gradients are freed)
    transient = est.active_peak_bytes - (est.weights_bytes + est.trainable_bytes - est.gradient_bytes)
    assert transient == pytest.approx(measured.transient_bytes, rel=0.10)
    assert est.active_peak_bytes == pytest.approx(measured.active_peak_bytes, rel=0.10)


@pytest.mark.parametrize("loss", ["hf", "hf_legacy"])
@pytest.mark.parametrize("sequences", [1, 2])
def test_hf_loss_peaks_match_the_cpu_measurement(loss, sequences):
    """Forward and backward peaks of the plain Hugging Face loss per token and vocabulary entry, measured
    as the slope between two lengths (a 64-wide LM head over 8,192 entries; seconds in all)."""
    from bench.calibration.loss_probe import bytes_per_token_and_vocab

    forward, backward = bytes_per_token_and_vocab(loss, vocab=8192, short=128, long=256, sequences=sequences)
    estimated_forward, estimated_backward = hf_loss_bytes_per_token(loss, sequences)
    assert estimated_forward == pytest.approx(forward, rel=0.02)
    assert estimated_backward == pytest.approx(backward, rel=0.02)


def test_batch_reaches_the_training_estimate(registry):
    subject = Subject.from_spec(registry.model("mistral-3-small"))
    recipe, gpu = registry.recipe("qlora-sft"), registry.gpu("4090")
    one = make_plan(PlanRequest(subject, gpu, None, None, None, recipe))
    two = make_plan(PlanRequest(subject, gpu, None, None, 2, recipe))
    assert one["batch"] == recipe.micro_batch and two["batch"] == 2
    assert two["memory"]["tokens_per_step"] == 2 * one["memory"]["tokens_per_step"]
    assert two["memory"]["activations_bytes"] > one["memory"]["activations_bytes"]
    assert one["max_micro_batch_that_fits"] >= 1 and one["max_context_that_fits"] >= recipe.sequence_length


def test_active_peak_and_what_the_card_needs_beyond_it(registry):
    subject = Subject.from_spec(registry.model("mistral-3-small"))
    request = PlanRequest(subject, registry.gpu("4090"), None, None, None, registry.recipe("qlora-sft"))
    mem = make_plan(request)["memory"]
    assert mem["total_bytes"] == mem["active_peak_bytes"] + mem["beyond_allocator_bytes"]
    assert mem["beyond_allocator_bytes"] == mem["overhead_bytes"] > 0
    assert mem["outside_allocator_bytes"] > 0  # paged 8-bit AdamW: reported, not on the card


@pytest.mark.parametrize("fields, words", [
    ({"method": "full", "quant": "nf4"}, "cannot be trained"),
    ({"optimizer_in_backward": True, "gradient_accumulation": 8}, "gradient_accumulation 1"),
    ({"activation_offload": True, "gradient_checkpointing": False}, "needs gradient_checkpointing"),
    ({"method": "reward", "loss": "hf"}, "no vocabulary loss"),
    ({"dpo_reference": "copy"}, "applies to method dpo"),
    ({"moe_targets": ["attention", "experts"]}, "fused 3-D parameters"),
])
def test_impossible_combinations_are_refused(registry, fields, words):
    base = registry.recipe("lora-sft").model_dump()
    with pytest.raises(ValidationError, match=words):
        type(registry.recipe("lora-sft"))(**{**base, **fields})


def test_loss_implementations_order(registry):
    subject = Subject.from_spec(registry.model("mistral-3-small"))
    recipe = registry.recipe("lora-sft")
    logits = {loss: make_plan(PlanRequest(subject, None, None, None, None, recipe.model_copy(update={"loss": loss})))
              ["memory"]["logits_bytes"] for loss in ("hf_legacy", "hf", "chunked", "fused_linear")}
    # both plain losses peak in the backward, at the same three fp32 tensors (see the measured test above)
    assert logits["hf_legacy"] == logits["hf"] > logits["chunked"] > logits["fused_linear"]
