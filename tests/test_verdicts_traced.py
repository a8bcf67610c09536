"""Fine-tune claims decided by a trace (`bench trace`): its tensor peak, what the card's step holds beyond the
traced one, and the planner's CUDA overhead against the card; below any run on the card, above arithmetic."""

from __future__ import annotations

from bench.records.schema import Metric, ModelRef, RunRecord
from bench.verdicts.evidence import TRACED, record_class
from bench.verdicts.memory import card_step_excess_bytes, evidence_class
from tests.test_verdicts_records import check, record

GIB = 2**30

QLORA_22B = dict(subject="mistral-small-22b", kind="finetune-memory",
                 conditions={"gpu": "rtx-4090", "recipe": "qlora-sft"})


def trace(registry, peak_gib: float, device: str = "cpu", target: str = "rtx-4090", recipe=None, **recipe_changes):
    recipe = (recipe or registry.recipe("qlora-sft")).model_copy(update=recipe_changes).model_dump()
    return RunRecord(
        schema_version=1, id=f"trace-{peak_gib}-{device}-{recipe['id'].replace('+', '-')}-{len(recipe_changes)}",
        kind="trace", status="ok",
        error=None, model=ModelRef(id="mistral-small-22b", repo="x/y", revision="main", resolved_revision=None,
                                   weights="synthetic"),
        config={"recipe": recipe, "device": device, "steps": 2, "traced": True},
        hardware={"target": target, "emulated": False, "device": "cpu"}, software={},
        metrics={"traced_peak_bytes": Metric(value=int(peak_gib * GIB), unit="bytes")},
        started_at="2026-12-03T10:00:00+00:00", duration_s=1.0)


def test_a_trace_that_fits_holds_as_its_own_evidence_class(registry):
    v = check(registry, [trace(registry, 15.5)], **QLORA_22B)
    card = registry.gpu("rtx-4090")
    overhead = int(card.runtime_overhead_gib * GIB)
    excess = v.evidence["card_step_excess_bytes"]
    assert v.verdict == "holds" and evidence_class(v, None) == TRACED
    assert v.evidence["held_bytes_traced"] == int(15.5 * GIB) + excess + overhead
    assert "traced tensor peak 15.50 GiB" in v.reason and "CUDA overhead" in v.reason
    assert "on fake cpu tensors" in v.reason and v.conditions["quant"] == "nf4"


def test_a_trace_over_the_budget_fails(registry):
    v = check(registry, [trace(registry, 23.5)], **QLORA_22B)
    assert v.verdict == "fails" and evidence_class(v, None) == TRACED and "> 23.99 GiB on rtx-4090" in v.reason


def test_a_run_on_the_card_outranks_a_trace(registry):
    oom = record(kind="finetune", model="mistral-small-22b", status="oom", emulated=True,
                 recipe={"method": "qlora", "quant": "nf4"})
    v = check(registry, [trace(registry, 10.0), oom], **QLORA_22B)
    assert v.verdict == "fails" and v.evidence["decisive_record"] == oom.id and evidence_class(v, None) != TRACED


def test_a_trace_of_another_recipe_shape_or_card_is_not_evidence(registry):
    arithmetic = check(registry, [], **QLORA_22B)
    others = [trace(registry, 10.0, rank=64), trace(registry, 10.0, sequence_length=512),
              trace(registry, 10.0, target="a100-80gb")]
    v = check(registry, others, **QLORA_22B)
    assert v.verdict == arithmetic.verdict == "plausible" and evidence_class(v, None) != TRACED
    # A longer sequence than the recipe's holds more, so it bears on the claim.
    v = check(registry, [trace(registry, 10.0, sequence_length=4096)], **QLORA_22B)
    assert evidence_class(v, None) == TRACED


def test_the_cards_step_beyond_a_cpu_trace_comes_from_the_estimate_and_a_cuda_trace_needs_none(registry):
    model, recipe = registry.model("mistral-small-22b"), registry.recipe("lora-sft")
    cuda = trace(registry, 10.0, device="cuda")
    assert card_step_excess_bytes(model, recipe, cuda) == 0
    # LoRA with adamw and fp32 adapters: the card's step (autocast, Triton loss) against the CPU's.
    assert card_step_excess_bytes(model, recipe, trace(registry, 10.0)) >= 0
    assert record_class(trace(registry, 10.0)) == f"{TRACED} (fake cpu tensors)"


LORA_22B = dict(QLORA_22B, conditions={"gpu": "rtx-4090", "recipe": "lora-sft"})


def test_a_claim_that_allows_a_4bit_base_fails_only_on_the_4bit_trace(registry):
    """The quote fixes no precision: a bf16 LoRA step that does not fit says nothing of the same method on a 4-bit
    base, which `four_bit_variant` reads; that one's trace decides either way, and says it is 4-bit."""
    from bench.verdicts.memory import four_bit_variant

    lora = registry.recipe("lora-sft")
    arithmetic = check(registry, [], **LORA_22B)
    bf16_over = trace(registry, 60.0, recipe=lora)
    assert check(registry, [bf16_over], **LORA_22B).verdict == arithmetic.verdict
    four_bit = four_bit_variant(lora)
    v = check(registry, [bf16_over, trace(registry, 30.0, recipe=four_bit)], **LORA_22B)
    assert v.verdict == "fails" and evidence_class(v, None) == TRACED and v.conditions["quant"] == "nf4"
    v = check(registry, [bf16_over, trace(registry, 12.0, recipe=four_bit)], **LORA_22B)
    assert v.verdict == "holds" and any("4-bit base" in u for u in v.conditions["unstated"])


def test_the_published_traces_decide_the_seed_fine_tune_claims(registry):
    """The traces under results/trace decide the seed claims no run on a card has: Mistral Small 22B's QLoRA on
    a 4090 fits; Scout's "RLHF on a single A100", read at its cheapest (DPO on a 4-bit base), does not."""
    from bench.records.store import iter_records
    from bench.verdicts.decide import all_verdicts
    from tests.helpers.paths import ROOT

    by_id = {v.claim_id: v for v in all_verdicts(registry, list(iter_records(ROOT / "results")))}
    small = by_id["mistral-small-22b-local-finetune-24gb"]
    assert small.verdict == "holds" and small.evidence_class == TRACED
    scout = by_id["scout-toolkit-rlhf-single-a100"]
    assert scout.verdict == "fails" and scout.evidence_class == TRACED and scout.conditions["quant"] == "nf4"
    assert scout.evidence["held_bytes_traced"] > 2 * scout.evidence["budget_bytes"]
