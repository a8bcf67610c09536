"""The planner's shortcuts give exactly what the plain computation gives.

The searches (`largest_that_fits`) follow the estimate's linear pieces instead of halving the range; they must
land on the same answer for every registry model, card, format and recipe, at the batch sizes the claims use.
The GGUF sizes a plan reads (`gguf_tensor_sizes`) judge each repeated tensor once; they must be the tensor
list's (`gguf_tensors`) to the byte, tensor by tensor.
"""

from __future__ import annotations

import pytest

from bench.config.hfconfig import from_hf_dict
from bench.config.registry import load_registry
from bench.estimate.gguf import GGUF_FTYPES, gguf_read_bytes_per_token, gguf_tensor_sizes, gguf_tensors
from bench.estimate.memory import InferenceMemory, mlp_width_per_token
from bench.estimate.plan import (
    PlanRequest,
    Subject,
    largest_that_fits,
    max_context_that_fits,
    max_micro_batch_that_fits,
    memory_for,
)
from bench.estimate.training import (
    COMPUTE_BYTES,
    _adapted_modules,
    activation_bytes,
    final_norm_bytes_per_token,
    layer_saved_bytes_per_token,
    lora_params,
)
from bench.verdicts.memory import four_bit_variant
from tests.helpers.paths import ROOT
from tests.test_gguf_sizes import FAMILY_CONFIGS, PUBLISHED, QUANTIZER_CASES, _family

MODELS = sorted(load_registry(ROOT / "configs").models)


def bisection(fits, top: int) -> int:
    """The reference: the plain bisection the planner ran before, one estimate per halving."""
    lo, hi = 0, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def counted(total_at, budget: int):
    """An estimate whose total is `total_at(n)` against `budget`, and the list of the n it was asked for."""
    asked: list[int] = []

    def memory_at(n: int) -> InferenceMemory:
        asked.append(n)
        return InferenceMemory(weights_bytes=total_at(n), weights_floor_bytes=0, kv_cache_bytes=0,
                               kv_bytes_per_token=0, activations_bytes=0, logits_bytes=0, overhead_bytes=0,
                               budget_bytes=budget)

    return memory_at, asked


@pytest.mark.parametrize("model", MODELS)
def test_context_search_matches_a_bisection_for_every_card_and_format(registry, model):
    subject = Subject.from_spec(registry.model(model))
    top = subject.config.max_position_embeddings
    checked = 0
    for gpu in registry.hardware.values():
        for quant in sorted({*subject.planned_quants(), *subject.quants}):
            for batch, kv_dtype in ((1, "auto"), (8, "auto"), (1, "fp8")):
                req = PlanRequest(subject, gpu, quant, batch=batch, kv_dtype=kv_dtype)
                expected = bisection(lambda n: memory_for(req, quant, n, gpu).fits, top)
                assert max_context_that_fits(req, quant, gpu) == expected, (gpu.id, quant, batch, kv_dtype)
                checked += 1
    assert checked >= len(registry.hardware) * len(subject.quants)


@pytest.mark.parametrize("model", MODELS)
def test_training_searches_match_a_bisection_for_every_card_and_recipe(registry, model):
    subject = Subject.from_spec(registry.model(model))
    recipes = [*registry.recipes.values()]
    recipes += [four_bit_variant(r) for r in recipes if r.quant != "nf4"]  # what the fine-tune verdicts plan
    for gpu in registry.hardware.values():
        for recipe in recipes:
            req = PlanRequest(subject, gpu, recipe=recipe)
            quant, length = recipe.quant, recipe.sequence_length
            longest = bisection(lambda n: memory_for(req, quant, n, gpu).fits,
                                subject.config.max_position_embeddings)
            widest = bisection(lambda n: memory_for(req, quant, length, gpu, n).fits, 4096)
            assert max_context_that_fits(req, quant, gpu) == longest, (gpu.id, recipe.id)
            assert max_micro_batch_that_fits(req, quant, length, gpu) == widest, (gpu.id, recipe.id)


def test_a_search_over_the_registry_finds_both_limits(registry):
    """The comparisons above see answers of every kind: none fits, some fits, everything fits."""
    subject = Subject.from_spec(registry.model("mistral-3-small"))
    top = subject.config.max_position_embeddings
    answers = {max_context_that_fits(PlanRequest(subject, gpu, "bf16"), "bf16", gpu)
               for gpu in registry.hardware.values()}
    assert 0 in answers and top in answers and any(0 < a < top for a in answers)


@pytest.mark.parametrize("budget", [0, 99, 100, 101, 5_000, 1_000_000, 10**12])
def test_piecewise_linear_estimate_lands_on_the_last_that_fits(budget):
    """A concave estimate like the KV cache under sliding windows: four linear pieces."""
    def total(n: int) -> int:
        return 100 + 3 * n + 5 * min(n, 700) + 2 * min(n, 40_000) + 11 * min(n, 9)

    memory_at, asked = counted(total, budget)
    assert largest_that_fits(memory_at, 131_072) == bisection(lambda n: total(n) <= budget, 131_072)
    assert len(asked) <= 12  # each piece's line is followed, not the range halved (17 estimates)


@pytest.mark.parametrize("budget", [1, 50, 10_000, 123_456_789])
def test_convex_and_flat_estimates_still_give_the_bisection_answer(budget):
    """Lines overshoot on a convex estimate and say nothing on a flat one: the bisection finishes."""
    for total in (lambda n: n * n, lambda n: 7 * (n // 1000), lambda n: 2**min(n, 40) + n, lambda n: 1000):
        memory_at, _ = counted(total, budget)
        assert largest_that_fits(memory_at, 65_536) == bisection(lambda n: total(n) <= budget, 65_536)


def test_tops_of_one_and_two():
    for top in (1, 2):
        for budget in (0, 1, 2, 3):
            memory_at, _ = counted(lambda n: n, budget)
            assert largest_that_fits(memory_at, top) == min(budget, top)


@pytest.mark.parametrize("model", MODELS)
def test_sums_over_layer_kinds_equal_sums_over_every_layer(registry, model):
    """The training estimate weighs one layer of each kind by its count; the sums are those over every layer."""
    cfg = registry.model(model).architecture
    layers = range(cfg.num_hidden_layers)
    for recipe in registry.recipes.values():
        for device in ("cuda", "cpu"):
            saved = [layer_saved_bytes_per_token(cfg, recipe, i, device) for i in layers]
            whole = recipe.model_copy(update={"gradient_checkpointing": False})
            final = final_norm_bytes_per_token(cfg, recipe)
            assert activation_bytes(cfg, whole, 4099, device) == (int(4099 * (sum(saved) + final)), 0)
            checkpointed = recipe.model_copy(update={"gradient_checkpointing": True, "activation_offload": True})
            widest = max(saved) + 2 * COMPUTE_BYTES * mlp_width_per_token(cfg)
            assert activation_bytes(cfg, checkpointed, 4099, device) == (4099 * final, int(4099 * widest))
        rank = recipe.rank or 0
        assert lora_params(cfg, recipe) == sum(copies * rank * (fan_in + fan_out) for i in layers
                                               for _, fan_in, fan_out, copies in _adapted_modules(cfg, recipe, i))


def _gguf_subjects(registry):
    """Every registry architecture, the published files' and the quantizer cases' of tests/test_gguf_sizes.py
    (a 70B llama, DeepSeek's latent attention, 8-expert Mixtral, tied embeddings, fused phi3 projections)."""
    configs = {m: spec.architecture for m, spec in registry.models.items()}
    configs.update({f"published {i}": from_hf_dict(case[0], "published") for i, case in enumerate(PUBLISHED)})
    configs.update({name: from_hf_dict(raw, name) for name, raw in QUANTIZER_CASES.items()})
    configs.update({name: _family(name) for name in FAMILY_CONFIGS})
    return configs


def test_gguf_sizes_are_the_tensor_lists_to_the_byte(registry):
    checked = 0
    for name, cfg in _gguf_subjects(registry).items():
        for quant in GGUF_FTYPES:  # every type bench lays out, MXFP4_MOE included
            for rope_freqs, imatrix in ((False, False), (True, False), (False, True)):
                tensors = gguf_tensors(cfg, quant, rope_freqs, imatrix)
                assert gguf_tensor_sizes(cfg, quant, rope_freqs, imatrix) == [(t.name, t.nbytes) for t in tensors], (
                    name, quant, rope_freqs, imatrix)
                checked += 1
    assert checked >= 3 * len(GGUF_FTYPES) * len(registry.models)


def test_gguf_read_bytes_follow_the_tensor_list(registry):
    """A decode step's bytes: every tensor, routed experts at their share, one row of an untied embedding."""
    for model in ("llama-4-scout", "mistral-3b", "qwen3-8b"):
        cfg = registry.model(model).architecture
        for quant in ("q4_k_m", "q8_0"):
            expected = 0.0
            for t in gguf_tensors(cfg, quant):
                if "_exps." in t.name:
                    expected += t.nbytes * 0.25
                elif t.name == "token_embd.weight" and not cfg.tie_word_embeddings:
                    expected += t.nbytes / cfg.vocab_size
                else:
                    expected += t.nbytes
            assert gguf_read_bytes_per_token(cfg, quant, 0.25) == expected
