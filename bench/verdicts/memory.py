"""Memory and fine-tune memory claims: "fits a 24GB card", "QLoRA on a 4090".

Arithmetic first: ``refuted-by-arithmetic`` when the exact lower bound (weights, KV cache,
trainable state) already exceeds the card; ``plausible`` when the full estimate fits, naming
any condition the quote did not state (a 4-bit quant, a shorter context); ``untested`` when only
the lower bound fits (arithmetic cannot decide; a measurement must). Measured records override
it: a run that fit ``holds``, an out-of-memory ``fails`` (precedence in
:mod:`bench.verdicts.evidence`); llama.cpp runs on a CPU decide on-device budgets and GPU
claims that name a local runner by their buffers; a fine-tune step traced at the real size
(`bench trace`) decides a fine-tune claim that no run on the card has, by its tensor peak plus
the planner's CUDA overhead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec, HardwareSpec, ModelSpec, RecipeSpec
from bench.estimate.params import count_params
from bench.estimate.plan import DEFAULT_CONTEXT, PlanRequest, Subject, make_plan
from bench.estimate.quant import weight_format
from bench.estimate.training import training_memory
from bench.units import gib
from bench.verdicts.evidence import (
    ARITHMETIC_ESTIMATE,
    ARITHMETIC_LOWER_BOUND,
    LLAMACPP_PLUS_CUDA,
    NO_EVIDENCE,
    TRACED,
    engine_quant,
    is_llamacpp_on_cpu,
    llamacpp_held_bytes,
    measured_class,
    memory_evidence,
    rank,
    runner_cuda_overhead_bytes,
    trace_evidence,
)
from bench.verdicts.verdict import FAILS, HOLDS, PLAUSIBLE, REFUTED, UNTESTED, ClaimKind, Verdict, new_verdict

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord

# A budget met with less than this fraction to spare is met inside the measurement's own uncertainty: a CPU's
# llama.cpp buffers standing in for a device's, or an estimate held to measurements within 4-9%
# (docs/estimator.md). The verdict keeps its word and says so.
NARROW_MARGIN = 0.05


def margin_qualifier(used: int, budget: int, what: str) -> str:
    """"" unless `used` fits `budget` with less than NARROW_MARGIN of it to spare."""
    spare = budget - used
    if spare < 0 or spare >= NARROW_MARGIN * budget:
        return ""
    return f"narrow margin: {gib(spare, 2)} to spare, {spare / budget:.1%} of the budget, inside {what}"


def decide(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    arithmetic = _memory_claim(registry, registry.model(claim.subject), claim)
    return _measured_memory(registry, claim, arithmetic, records)


def _memory_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    cond = claim.conditions
    if cond.gpu is None:
        return new_verdict(claim, UNTESTED, "the claim names no card or memory budget")
    gpu = registry.gpu(cond.gpu)
    subject = Subject.from_spec(model)
    recipe = registry.recipe(cond.recipe) if cond.recipe else None
    if claim.kind == "finetune-memory" and recipe is None:
        return new_verdict(claim, UNTESTED, "a fine-tune claim needs a recipe to estimate")
    context = cond.context or (recipe.sequence_length if recipe else
                               min(DEFAULT_CONTEXT, model.architecture.max_position_embeddings))
    default = "the recipe's sequence length" if recipe else "bench's default context"
    unstated = [] if cond.context else [f"{context} tokens ({default}; the quote states none)"]
    batch = cond.batch or 1

    recipes = {}
    if recipe is not None:
        candidates = [recipe.quant]
        recipes[recipe.quant] = recipe
        if cond.quant is None and recipe.quant != "nf4":
            # The quote does not fix the base's precision: the same method on a 4-bit base (QLoRA-style,
            # paged 8-bit optimizer) is the cheapest reading of it.
            candidates.append("nf4")
            recipes["nf4"] = four_bit_variant(recipe)
    elif cond.quant:
        candidates = [cond.quant]
    else:  # the quote allows any quant: from the highest precision down to the smallest
        candidates = sorted(model.quants, key=lambda q: -weight_format(q).bits_per_weight)

    conditions = {"gpu": gpu.id, "context": context, "batch": batch,
                  "recipe": recipe.id if recipe else None, "quant": cond.quant}
    plans = {q: make_plan(PlanRequest(subject, gpu, None if recipe else q, context, batch, recipes.get(q)))
             for q in candidates}
    evidence: dict[str, Any] = {"estimates": {q: _estimate_summary(p) for q, p in plans.items()}}
    fitting = [q for q in candidates if plans[q]["fits"]]
    if model.proxy:
        unstated.append(f"proxy shape: {model.proxy}")

    if fitting:
        best = fitting[0]
        needs = list(unstated)
        if best != candidates[0] and recipe is not None:
            needs.insert(0, f"fits only on a 4-bit base ({recipes[best].id}), not at {candidates[0]}")
        elif best != candidates[0]:
            needs.insert(0, f"fits only at {best} or smaller (not at {candidates[0]})")
        conditions["quant"] = best
        reason = (f"estimate {gib(plans[best]['memory']['total_bytes'])} at {best} "
                  f"<= budget {gib(gpu.budget_bytes)} on {gpu.id}")
        qualifier = margin_qualifier(plans[best]["memory"]["total_bytes"], gpu.budget_bytes,
                                     "the estimate's uncertainty")
        return new_verdict(claim, PLAUSIBLE, reason, conditions={**conditions, "unstated": needs},
                           evidence=evidence, qualifier=qualifier,
                           would_change="a measured run on the card (or capped to it)")

    smallest = candidates[-1]
    lower = plans[smallest]["memory"]["lower_bound_bytes"]
    conditions["quant"] = smallest
    if lower > gpu.budget_bytes:
        what = "frozen weights and trainable state" if recipe else "weights and KV cache"
        reason = (f"even at {smallest}, {what} alone need {gib(lower)} > budget {gib(gpu.budget_bytes)} "
                  f"on {gpu.id}")
        return new_verdict(claim, REFUTED, reason, conditions={**conditions, "unstated": unstated},
                        evidence=evidence,
                        would_change="a smaller quant than the model's registry lists, or a correction to "
                                     "the architecture numbers")
    memory = plans[smallest]["memory"]
    reason = (f"arithmetic cannot decide: at {smallest} the lower bound {gib(lower)} fits "
              f"{gib(gpu.budget_bytes)} but the estimate {gib(memory['total_bytes'])} does not")
    if memory["weights_bytes"] > memory["weights_floor_bytes"]:
        reason += (f" (today's bitsandbytes leaves the fused MoE experts in 16 bits: "
                   f"{gib(memory['weights_bytes'])} of weights instead of {gib(memory['weights_floor_bytes'])})")
    return new_verdict(claim, UNTESTED, reason, conditions={**conditions, "unstated": unstated},
                    evidence=evidence, would_change="a measured run on the card (or capped to it)")


def four_bit_variant(recipe: RecipeSpec) -> RecipeSpec:
    """The recipe's method on an NF4 double-quantised base with a paged 8-bit optimizer."""
    method = "qlora" if recipe.method == "lora" else recipe.method
    return recipe.model_copy(update={"id": f"{recipe.id}+nf4", "method": method, "quant": "nf4",
                                     "double_quant": True, "optimizer": "paged_adamw_8bit"})


def _estimate_summary(plan: dict[str, Any]) -> dict[str, Any]:
    mem = plan["memory"]
    return {"total_bytes": mem["total_bytes"], "lower_bound_bytes": mem["lower_bound_bytes"],
            "budget_bytes": mem["budget_bytes"], "fits": plan["fits"], "breakdown": mem,
            "max_context_that_fits": plan["max_context_that_fits"]}


def _vllm_need_text(record: RunRecord) -> str | None:
    """For a vLLM run: what the model needed by vLLM's own accounting, not its reservation.

    vLLM's KV cache grows to fill its budget, so its peak says nothing about the model; the
    run fits on what it needed (weights, activation peak, CUDA graphs, the KV cache of the
    run's sequences), and that sum is what the verdict names.
    """
    acc = (record.details.get("engine") or {}).get("memory_accounting") or {}
    parts = {"weights": acc.get("weights_bytes"), "activations": acc.get("activation_peak_bytes"),
             "CUDA graphs": acc.get("cudagraph_estimate_bytes"), "KV for the run": acc.get("kv_cache_needed_bytes")}
    known = {name: value for name, value in parts.items() if value is not None}
    if "weights" not in known or "KV for the run" not in known:
        return None
    terms = " + ".join(f"{name} {gib(value)}" for name, value in known.items())
    reserved = acc.get("kv_cache_reserved_bytes")
    kept = f"; vLLM reserved {gib(reserved)} of KV cache" if reserved is not None else ""
    return f", needing {gib(sum(known.values()))} by vLLM's accounting ({terms}){kept}"


def cuda_overhead_bytes(gpu: HardwareSpec, runner: str | None) -> int:
    """What a GPU holds beyond a local runner's buffers (CUDA context, library workspaces), calibrated from
    published pairs of a runner's buffers and nvidia-smi's figure (`evidence.RUNNER_CUDA_PAIRS`); an on-device
    budget holds the buffers alone (the CPU measured its bytes)."""
    return runner_cuda_overhead_bytes(runner, gpu) or 0


def _llamacpp_budget(model: ModelSpec, gpu: HardwareSpec, records: list[RunRecord], how: str,
                     conditions: dict[str, Any], evidence: dict[str, Any], claim: ClaimSpec) -> Verdict:
    """llama.cpp runs on a CPU decide a budget by their buffers, held against it.

    The claim's context, where it states one, already selected the records; where it states
    none, the largest measured context whose buffers fit decides (and is named), and when none
    fits, the smallest measured context fails the claim. On a GPU (a claim naming a local runner)
    the runner's calibrated CUDA overhead is added: the buffers are the same bytes, the card also holds a
    CUDA context. Counting every buffer on the card is a slight overstatement (llama.cpp keeps the
    token embeddings in host memory when it offloads every layer).
    """
    overhead = cuda_overhead_bytes(gpu, claim.conditions.runner)
    if overhead:
        how = LLAMACPP_PLUS_CUDA
    context = {r.id: (r.details.get("engine") or {}).get("n_ctx") or 0 for r in records}
    held = {r.id: sum(llamacpp_held_bytes(r).values()) + overhead for r in records if r.status == "ok"}
    fitting = [r for r in records if r.id in held and held[r.id] <= gpu.budget_bytes]
    best = max(fitting, key=lambda r: context[r.id]) if fitting else min(records, key=lambda r: context[r.id])
    engine = best.details.get("engine") or {}
    quant = engine.get("weights_format")
    unstated = []
    if claim.conditions.quant is None:
        unstated.append(f"{'holds' if fitting else 'measured'} at {quant}; the quote states no quant")
    if not claim.conditions.context:
        which = "the largest measured that fits" if fitting else "the smallest measured; none fits"
        unstated.append(f"{context[best.id]} tokens of context ({which}; the quote states none)")
    conditions = {**conditions, "quant": quant, "context": context[best.id], "repack": engine.get("repack"),
                  "unstated": unstated}
    evidence = {**evidence, "decisive_record": best.id, "held_bytes": held.get(best.id), "budget_bytes":
                gpu.budget_bytes, "evidence_class": how,
                "records": [best.id] + [r for r in evidence["records"] if r != best.id],
                "estimate": _with_estimate_at(evidence["estimate"], model, gpu, quant, context[best.id])}
    if overhead:
        evidence["cuda_overhead_bytes"] = overhead
    if best.status != "ok":
        return new_verdict(claim, FAILS, f"{how}: llama.cpp could not allocate at {quant} ({best.id})",
                        conditions=conditions, evidence=evidence, would_change="a run of higher precedence")
    terms = " + ".join([f"{name} {gib(v, 2)}" for name, v in llamacpp_held_bytes(best).items()]
                       + ([f"CUDA overhead {gib(overhead, 2)}"] if overhead else []))
    word = HOLDS if fitting else FAILS
    qualifier = margin_qualifier(held[best.id], gpu.budget_bytes, "what a CPU run can say of a device's memory")
    return new_verdict(claim, word, f"{how}: {gib(held[best.id], 2)} ({terms}) {'<=' if fitting else '>'} "
                       f"{gib(gpu.budget_bytes, 2)} on {gpu.id} at {quant}, context {context[best.id]}, repack "
                       f"{'on' if engine.get('repack') else 'off'} ({best.id})", conditions=conditions,
                       evidence=evidence, qualifier=qualifier,
                       would_change="a measurement on the device, or under a cap emulating it")


def _with_estimate_at(estimate: dict[str, Any], model: ModelSpec, gpu: HardwareSpec, quant: str | None,
                      context: int) -> dict[str, Any]:
    """The arithmetic evidence with an estimate at the quant and context a measurement decided at, so
    every figure shown beside the measurement (a plot's estimate bar, a citation) is of the same
    configuration; the arithmetic verdict estimated only the registry's quants at its own context."""
    if quant is None or not context:
        return estimate
    plan = make_plan(PlanRequest(Subject.from_spec(model), gpu, quant, context, 1))
    return {**estimate, "estimates": {**(estimate.get("estimates") or {}), quant: _estimate_summary(plan)}}


def _measured_memory(registry: Registry, claim: ClaimSpec, arithmetic: Verdict,
                     records: list[RunRecord]) -> Verdict:
    recipe = registry.recipe(claim.conditions.recipe) if claim.conditions.recipe else None
    card = registry.gpu(claim.conditions.gpu) if claim.conditions.gpu else None
    found = memory_evidence(records, claim, recipe, card)
    if not found:
        if card is not None and recipe is not None:
            traced = _traced_memory(registry.model(claim.subject), claim, arithmetic, records, recipe, card)
            if traced is not None:
                return traced
        return arithmetic
    best = found[0]
    quant = engine_quant(best)
    unstated = []
    if claim.conditions.quant is None and quant not in (None, "bf16"):
        unstated.append(f"{'holds' if best.status == 'ok' else 'measured'} at {quant}; the quote states no quant")
    conditions = {**arithmetic.conditions, "quant": quant, "emulated": bool(best.hardware.get("emulated")),
                  "weights": best.model.weights, "unstated": unstated + [u for u in arithmetic.conditions.get(
                      "unstated", []) if "the quote states none" in u]}
    how = measured_class(best)
    evidence = {"records": [r.id for r in found], "decisive_record": best.id, "estimate": arithmetic.evidence}
    if is_llamacpp_on_cpu(best):
        assert card is not None  # memory_evidence admits llama.cpp runs only for a claim with a card
        return _llamacpp_budget(registry.model(claim.subject), card, [r for r in found if rank(r) == 0], how,
                                conditions, evidence, claim)
    peak = best.metrics.get("peak_memory_bytes")
    peak_text = _vllm_need_text(best) or (f", peak {gib(peak.value)}" if peak and peak.value else "")
    if best.status == "ok":
        return new_verdict(claim, HOLDS, f"{how}: ran at {quant}{peak_text} ({best.id})", conditions=conditions,
                        evidence=evidence, would_change="an out-of-memory in a run of higher precedence")
    return new_verdict(claim, FAILS, f"{how}: out of memory at {quant} ({best.id})", conditions=conditions,
                    evidence=evidence, would_change="a successful run of higher precedence")


def card_step_excess_bytes(model: ModelSpec, recipe: RecipeSpec, record: RunRecord) -> int:
    """How much more the card's own step holds than the step a trace ran, by the estimate's model of both; 0
    when the trace ran on fake CUDA tensors or the card's step is the lighter. A trace on fake CPU tensors runs
    the CPU's step (trl's torch loss in place of its Triton kernel, no autocast, a paged optimizer's state as
    ordinary tensors), which differs from the card's only in those terms, each modelled by the estimate."""
    if record.config.get("device") == "cuda":
        return 0
    traced = record.config.get("recipe") or {}
    at = recipe.model_copy(update={k: traced[k] for k in ("sequence_length", "micro_batch") if traced.get(k)})
    params = count_params(model.architecture, model.extra_params)
    card, cpu = (training_memory(model.architecture, params, at, 0, None, device=d).active_peak_bytes
                 for d in ("cuda", "cpu"))
    return max(0, card - cpu)


def _readings(claim: ClaimSpec, recipe: RecipeSpec) -> list[RecipeSpec]:
    """The recipes a fine-tune claim can be read as, costliest first: its own, and where the quote does not fix
    the base's precision the same method on a 4-bit base (as `_memory_claim` reads it)."""
    if claim.conditions.quant is None and recipe.quant != "nf4":
        return [recipe, four_bit_variant(recipe)]
    return [recipe]


def _traced_memory(model: ModelSpec, claim: ClaimSpec, arithmetic: Verdict, records: list[RunRecord],
                   recipe: RecipeSpec, card: HardwareSpec) -> Verdict | None:
    """Traces decide a fine-tune claim by their tensor peak, plus what the card's step holds beyond the traced
    one, plus the planner's CUDA overhead (the context, library workspaces and the allocator's slack, which no
    tensor holds), against the card's budget: the newest trace that fits holds the claim; one that does not
    fails it only when it traced the cheapest reading the quote allows (a bf16 step that does not fit says
    nothing of a 4-bit one). None when no trace decides."""
    readings = _readings(claim, recipe)
    traces = trace_evidence(records, claim, readings)
    overhead = int(card.runtime_overhead_gib * 2**30 * card.device_count)

    def held(record: RunRecord, reading: RecipeSpec) -> tuple[int, int, int]:
        """What the card would hold by this trace (its peak, the card's step beyond it, the overhead), and the
        first two terms."""
        traced = int(record.metrics["traced_peak_bytes"].value)
        excess = card_step_excess_bytes(model, reading, record)
        return traced + excess + overhead, traced, excess

    sized = [(record, reading, held(record, reading)) for record, reading in traces]  # once per trace
    fitting = [entry for entry in sized if entry[2][0] <= card.budget_bytes]
    failing = [entry for entry in sized if entry[2][0] > card.budget_bytes and entry[1] is readings[-1]]
    if not fitting and not failing:
        return None
    best, reading, (total, traced, excess) = (fitting or failing)[0]
    device = best.config.get("device")
    shape = best.config.get("recipe") or {}
    unstated = [u for u in arithmetic.conditions.get("unstated", []) if "the quote states none" in u]
    if reading is not recipe:
        unstated.insert(0, f"{'fits' if fitting else 'traced'} on a 4-bit base ({reading.id}), not at {recipe.quant}")
    conditions = {**arithmetic.conditions, "quant": reading.quant, "context": shape.get("sequence_length"),
                  "batch": shape.get("micro_batch"), "unstated": unstated}
    evidence = {"records": [r.id for r, _ in traces], "decisive_record": best.id, "estimate": arithmetic.evidence,
                "evidence_class": TRACED, "traced_bytes": traced, "card_step_excess_bytes": excess,
                "cuda_overhead_bytes_planner": overhead, "held_bytes_traced": total, "budget_bytes": card.budget_bytes}
    terms = " + ".join([f"traced tensor peak {gib(traced, 2)}"]
                       + ([f"the card's step beyond the {device}'s, by the estimate, {gib(excess, 2)}"] if excess
                          else []) + [f"CUDA overhead {gib(overhead, 2)}"])
    reason = (f"{TRACED}: {gib(total, 2)} ({terms}) {'<=' if fitting else '>'} {gib(card.budget_bytes, 2)} on "
              f"{card.id} at {reading.quant}, {shape.get('micro_batch')} x {shape.get('sequence_length')} tokens, "
              f"on fake {device} tensors ({best.id})")
    qualifier = margin_qualifier(total, card.budget_bytes, "what a trace cannot see (the allocator's rounding)")
    return new_verdict(claim, HOLDS if fitting else FAILS, reason, conditions=conditions, evidence=evidence,
                       qualifier=qualifier, would_change="a run on the card, or under a cap emulating it")


def evidence_class(verdict: Verdict, record: RunRecord | None) -> str:
    evidence = verdict.evidence or {}
    if evidence.get("cuda_overhead_bytes"):  # a GPU claim naming a local runner (`_llamacpp_budget`)
        return LLAMACPP_PLUS_CUDA
    if evidence.get("evidence_class") == TRACED:
        return TRACED
    if record is not None:
        return measured_class(record)
    if evidence.get("estimates"):
        return ARITHMETIC_LOWER_BOUND if verdict.verdict == REFUTED else ARITHMETIC_ESTIMATE
    return NO_EVIDENCE


def deciding_number(verdict: Verdict, record: RunRecord | None) -> str:
    evidence, cond = verdict.evidence or {}, verdict.conditions or {}
    if evidence.get("held_bytes_traced") is not None:
        return (f"traced peak with the CUDA overhead {gib(evidence['held_bytes_traced'], 2)} against "
                f"{gib(evidence['budget_bytes'], 2)} at {cond.get('quant')}")
    if evidence.get("held_bytes") is not None:
        plus = " with the CUDA overhead" if evidence.get("cuda_overhead_bytes") else ""
        return f"llama.cpp buffers{plus} {gib(evidence['held_bytes'], 2)} against {gib(evidence['budget_bytes'], 2)}"
    if record is not None:
        peak = record.metrics.get("peak_memory_bytes")
        what = "out of memory" if record.status == "oom" else (f"peak {gib(peak.value, 2)}" if peak and peak.value
                                                                 else "ran")
        return f"{what} on {record.hardware.get('target')} at {cond.get('quant')}"
    estimates = evidence.get("estimates") or {}
    estimate = estimates.get(cond.get("quant")) or next(iter(estimates.values()), None)
    if estimate is None:
        return ""
    key = "lower_bound_bytes" if verdict.verdict == REFUTED else "total_bytes"
    what = "lower bound" if key == "lower_bound_bytes" else "estimate"
    return f"{what} {gib(estimate[key], 2)} of {gib(estimate['budget_bytes'], 2)} at {cond.get('quant')}"


def restate(registry: Registry, claim: ClaimSpec) -> str:
    cond = claim.conditions
    if cond.gpu is None:
        return f"{claim.subject} runs within a memory budget the quote does not name"
    gpu = registry.gpu(cond.gpu)
    what = f"trains with the {cond.recipe} recipe" if claim.kind == "finetune-memory" else "runs"
    runner = f" in {cond.runner}" if cond.runner else ""
    quant = f"at {cond.quant}" if cond.quant else "at some quant"
    context = f" with {cond.context:,} tokens of context" if cond.context else ""
    return f"{claim.subject} {what}{runner} {quant}{context} within the {gib(gpu.budget_bytes, 2)} of {gpu.id}"


KIND = ClaimKind(("inference-memory", "finetune-memory"), decide, evidence_class, deciding_number, restate)
