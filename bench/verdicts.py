"""Claims x estimates x records -> verdicts.

Verdict words are a contract (design section 6). How each kind of claim is decided:

* memory and fine-tune claims: ``refuted-by-arithmetic`` when the exact lower bound
  (weights, KV cache, trainable state) already exceeds the card; ``plausible`` when
  the full estimate fits, naming any condition the quote did not state (a 4-bit
  quant, a shorter context); ``untested`` when only the lower bound fits
  (arithmetic cannot decide; a measurement must).
* params claims: the count from the architecture is exact, so within tolerance it
  ``holds`` and outside it is ``refuted-by-arithmetic``.
* license, open-weights and context claims are decided by the registry's recorded
  facts (each with its source): ``holds`` or ``fails``.
* speed claims: ``refuted-by-arithmetic`` above the roofline, else ``plausible``.
* responsive claims: a ``bench serve`` record at one user against a TTFT and a reading rate
  (the convention is in :mod:`bench.serve.verdict`), else the roofline against the reading rate.
* eval claims: each compared task's primary score against each compared model's, a gap
  inside the combined standard error being a tie: ``holds`` when every comparison is a
  win, ``fails`` on any loss or tie, ``untested`` while any record is missing.

Measured records override arithmetic for memory, fine-tune and speed claims: a run that
fit is ``holds``, an out-of-memory ``fails`` (precedence in :mod:`bench.evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.evals.compare import Score, compare, primary_metric
from bench.evidence import (LOCAL_RUNNER_LABEL, RANK_LABELS, engine_quant, eval_record, is_llamacpp_on_cpu,
                            llamacpp_held_bytes, memory_evidence, rank, runtime_evidence, speed_evidence)
from bench.estimate.gguf import LLAMA_CPP_MODEL_TYPES
from bench.estimate.quant import weight_format
from bench.evidence_class import verdict_class
from bench.plan import DEFAULT_CONTEXT, PlanRequest, Subject, make_plan
from bench.registry import Registry
from bench.results import RunRecord
from bench.specs import ClaimSource, ClaimSpec, HardwareSpec, ModelSpec, RecipeSpec

HOLDS, FAILS, REFUTED, PLAUSIBLE, UNTESTED = "holds", "fails", "refuted-by-arithmetic", "plausible", "untested"
VERDICTS = (HOLDS, FAILS, REFUTED, PLAUSIBLE, UNTESTED)
# What a quote calling a license "permissive" admits: OSI licenses without use restrictions.
# The Llama 4 Community License (acceptable-use policy, 700M-user clause) and Mistral's research
# license are not among them.
PERMISSIVE_LICENSES = {"apache-2.0", "mit", "bsd-3-clause"}


@dataclass
class Verdict:
    claim_id: str
    source: str
    subject: str
    kind: str
    quote: str
    verdict: str
    reason: str
    conditions: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    would_change: str = ""
    evidence_class: str = ""  # in words (bench.evidence_class), filled by all_verdicts

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verdict_for(registry: Registry, source: ClaimSource, claim: ClaimSpec,
                records: Sequence[RunRecord] = ()) -> Verdict:
    if claim.kind == "eval":  # arithmetic has nothing to say about quality: records alone decide
        verdict = _eval_comparison(registry, claim, list(records))
    else:
        verdict = _DECIDERS[claim.kind](registry, registry.model(claim.subject), claim)
    if claim.kind in ("inference-memory", "finetune-memory"):
        verdict = _measured_memory(registry, claim, verdict, list(records))
    elif claim.kind == "speed":
        verdict = _measured_speed(claim, verdict, list(records))
    elif claim.kind == "responsive":
        from bench.serve.verdict import measured_responsive

        verdict = measured_responsive(claim, verdict, list(records))
    elif claim.kind == "runtime":
        verdict = _measured_runtime(claim, verdict, list(records))
    verdict.source = source.source
    return verdict


def all_verdicts(registry: Registry, records: Sequence[RunRecord] = ()) -> list[Verdict]:
    verdicts = [verdict_for(registry, source, claim, records) for source, claim in registry.claims()]
    by_id = {r.id: r for r in records}
    for verdict in verdicts:
        verdict.evidence_class = verdict_class(verdict, by_id)
    return verdicts


def _verdict(claim: ClaimSpec, word: str, reason: str, **kw: Any) -> Verdict:
    return Verdict(claim_id=claim.id, source="", subject=claim.subject, kind=claim.kind, quote=claim.quote,
                   verdict=word, reason=reason, **kw)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _memory_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    cond = claim.conditions
    if cond.gpu is None:
        return _verdict(claim, UNTESTED, "the claim names no card or memory budget")
    gpu = registry.gpu(cond.gpu)
    subject = Subject.from_spec(model)
    recipe = registry.recipe(cond.recipe) if cond.recipe else None
    if claim.kind == "finetune-memory" and recipe is None:
        return _verdict(claim, UNTESTED, "a fine-tune claim needs a recipe to estimate")
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
        reason = (f"estimate {_gib(plans[best]['memory']['total_bytes'])} at {best} "
                  f"<= budget {_gib(gpu.budget_bytes)} on {gpu.id}")
        return _verdict(claim, PLAUSIBLE, reason, conditions={**conditions, "unstated": needs},
                        evidence=evidence, would_change="a measured run on the card (or capped to it)")

    smallest = candidates[-1]
    lower = plans[smallest]["memory"]["lower_bound_bytes"]
    conditions["quant"] = smallest
    if lower > gpu.budget_bytes:
        what = "frozen weights and trainable state" if recipe else "weights and KV cache"
        reason = (f"even at {smallest}, {what} alone need {_gib(lower)} > budget {_gib(gpu.budget_bytes)} "
                  f"on {gpu.id}")
        return _verdict(claim, REFUTED, reason, conditions={**conditions, "unstated": unstated},
                        evidence=evidence,
                        would_change="a smaller quant than the model's registry lists, or a correction to "
                                     "the architecture numbers")
    memory = plans[smallest]["memory"]
    reason = (f"arithmetic cannot decide: at {smallest} the lower bound {_gib(lower)} fits "
              f"{_gib(gpu.budget_bytes)} but the estimate {_gib(memory['total_bytes'])} does not")
    if memory["weights_bytes"] > memory["weights_floor_bytes"]:
        reason += (f" (today's bitsandbytes leaves the fused MoE experts in 16 bits: "
                   f"{_gib(memory['weights_bytes'])} of weights instead of {_gib(memory['weights_floor_bytes'])})")
    return _verdict(claim, UNTESTED, reason, conditions={**conditions, "unstated": unstated},
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


def _params_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    counts = Subject.from_spec(model).params
    t = claim.threshold
    checks = [(name, claimed, counted) for name, claimed, counted in
              (("total", t.total_params, counts.total), ("active", t.active_params, counts.active))
              if claimed is not None]
    if not checks:
        return _verdict(claim, UNTESTED, "the claim states no parameter count")
    evidence = {"counted": {"total": counts.total, "active": counts.active, "text": counts.text},
                "published": model.published_params}
    if model.proxy:
        return _verdict(claim, UNTESTED, f"the model's size is undisclosed; {model.proxy}", evidence=evidence,
                        would_change="published weights or an official parameter count")
    off = [f"{name} {counted / 1e9:.2f}B vs claimed {claimed / 1e9:.3g}B"
           for name, claimed, counted in checks if abs(counted - claimed) > t.tolerance * claimed]
    if off:
        return _verdict(claim, REFUTED, "counted from the architecture: " + "; ".join(off), evidence=evidence,
                        conditions={"tolerance": t.tolerance})
    counted_text = "; ".join(f"{name} {counted / 1e9:.2f}B" for name, _, counted in checks)
    return _verdict(claim, HOLDS, f"counted from the architecture: {counted_text} (within {t.tolerance:.0%})",
                    evidence=evidence, conditions={"tolerance": t.tolerance})


# Where a registry entry keeps the source of each fact a claim can be checked against, best first.
_FACT_SOURCE_KEYS = {"license": ("license", "availability"), "open-weights": ("open-weights", "availability"),
                     "context": ("context", "max_position_embeddings", "architecture")}


def fact_source(model: ModelSpec, kind: str) -> str:
    """The source of the registry fact that decides a claim. Open weights with no written source are
    sourced by the repository that holds them."""
    found = next((model.sources[k] for k in _FACT_SOURCE_KEYS[kind] if model.sources.get(k)), "")
    if not found and kind == "open-weights" and model.repo:
        found = f"https://huggingface.co/{model.repo} (the repository holding the weights)"
    return found


def _fact_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    t = claim.threshold
    if claim.kind == "license":
        claimed, recorded = t.license, model.license
        admitted = PERMISSIVE_LICENSES if claimed == "permissive" else {(claimed or "").lower()}
        ok = recorded.lower() in admitted
    elif claim.kind == "open-weights":
        claimed, recorded = t.open_weights, model.open_weights
        ok = claimed is not None and claimed == recorded
    else:  # context
        claimed, recorded = t.context_tokens, model.architecture.max_position_embeddings
        ok = claimed is not None and recorded >= claimed
    if claimed is None:
        return _verdict(claim, UNTESTED, f"the claim states no {claim.kind} value")
    evidence = {"recorded": recorded, "claimed": claimed, "source": fact_source(model, claim.kind),
                "findings": [f.fact for f in model.findings]}
    reason = f"registry records {claim.kind} {recorded!r}; the claim says {claimed!r}"
    return _verdict(claim, HOLDS if ok else FAILS, reason, evidence=evidence,
                    would_change="a correction to the registry entry, with its source")


def _speed_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    cond, wanted = claim.conditions, claim.threshold.decode_tokens_per_s
    if cond.gpu is None or wanted is None:
        return _verdict(claim, UNTESTED, "a speed claim needs a card and a tokens/s figure to check")
    gpu = registry.gpu(cond.gpu)
    quant = cond.quant or min(model.quants, key=lambda q: weight_format(q).bits_per_weight)
    plan = make_plan(PlanRequest(Subject.from_spec(model), gpu, quant, cond.context, cond.batch or 1))
    bound = plan["roofline"]["decode_tokens_per_s"]
    evidence = {"roofline": plan["roofline"]}
    conditions = {"gpu": gpu.id, "quant": quant, "context": plan["context"], "batch": plan["batch"]}
    if bound < wanted:
        return _verdict(claim, REFUTED, f"roofline bound {bound:.1f} tokens/s < claimed {wanted:g}",
                        evidence=evidence, conditions=conditions)
    return _verdict(claim, PLAUSIBLE, f"roofline bound {bound:.1f} tokens/s >= claimed {wanted:g}",
                    evidence=evidence, conditions=conditions, would_change="a measured run on the card")


def _responsive_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    """The convention and its deciding code live with `bench serve` (bench.serve.verdict)."""
    from bench.serve.verdict import responsive_by_arithmetic

    return responsive_by_arithmetic(registry, model, claim)


def _eval_comparison(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    cond = claim.conditions
    conditions = {"tasks": cond.tasks, "compare_to": cond.compare_to}
    would_change = "bench eval records (real weights, no --limit) of every compared model on the same tasks"
    missing_models = [m for m in cond.compare_to if m not in registry.models]
    if missing_models:
        return _verdict(claim, UNTESTED, f"compared models not in the registry: {', '.join(missing_models)}",
                        conditions=conditions, would_change=would_change)
    outcomes, missing, used = [], [], []
    for task in cond.tasks:
        mine = eval_record(records, claim.subject, task)
        for other in cond.compare_to:
            theirs = eval_record(records, other, task)
            if mine is None or theirs is None:
                missing.append(f"{task}: {claim.subject if mine is None else other}")
                continue
            a_scores, b_scores = mine.metrics["scores"].value[task], theirs.metrics["scores"].value[task]
            name = primary_metric(a_scores)
            if name is None or name not in b_scores or _shots(mine) != _shots(theirs):
                missing.append(f"{task}: no comparable metric or settings")
                continue
            result = compare(Score(a_scores[name], a_scores[f"{name}_stderr"]),
                             Score(b_scores[name], b_scores[f"{name}_stderr"]))
            outcomes.append(f"{task} {name}: {a_scores[name]:.3f} vs {other} {b_scores[name]:.3f} -> {result}")
            used += [mine.id, theirs.id]
    evidence = {"comparisons": outcomes, "records": sorted(set(used)), "missing": missing}
    if missing:
        return _verdict(claim, UNTESTED, "missing eval evidence: " + "; ".join(missing), conditions=conditions,
                        evidence=evidence, would_change=would_change)
    if not outcomes:
        return _verdict(claim, UNTESTED, "the claim names no tasks or models to compare", conditions=conditions)
    won = all(o.endswith("-> win") for o in outcomes)
    return _verdict(claim, HOLDS if won else FAILS, "; ".join(outcomes), conditions=conditions, evidence=evidence,
                    would_change="new eval records; a tie within the combined standard error is not a win")


def _shots(record: RunRecord) -> Any:
    return record.metrics["num_fewshot"].value if "num_fewshot" in record.metrics else None


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
    terms = " + ".join(f"{name} {_gib(value)}" for name, value in known.items())
    reserved = acc.get("kv_cache_reserved_bytes")
    kept = f"; vLLM reserved {_gib(reserved)} of KV cache" if reserved is not None else ""
    return f", needing {_gib(sum(known.values()))} by vLLM's accounting ({terms}){kept}"


def _gib2(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"  # budgets are decided by tenths of a GiB: show hundredths


def cuda_overhead_bytes(gpu: HardwareSpec) -> int:
    """What a GPU holds beyond llama.cpp's buffers (CUDA context, library workspaces), as the planner
    states it per card; an on-device budget holds the buffers alone (the CPU measured its bytes)."""
    return 0 if gpu.device_class == "edge" else int(gpu.runtime_overhead_gib * 2**30) * gpu.device_count


def _llamacpp_budget(gpu: HardwareSpec, records: list[RunRecord], how: str, conditions: dict[str, Any],
                     evidence: dict[str, Any], claim: ClaimSpec) -> Verdict:
    """llama.cpp runs on a CPU decide a budget by their buffers, held against it.

    The claim's context, where it states one, already selected the records; where it states
    none, the largest measured context whose buffers fit decides (and is named), and when none
    fits, the smallest measured context fails the claim. On a GPU (a claim naming a local runner)
    the planner's CUDA overhead is added: the buffers are the same bytes, the card also holds a
    CUDA context. Counting every buffer on the card is a slight overstatement (llama.cpp keeps the
    token embeddings in host memory when it offloads every layer).
    """
    overhead = cuda_overhead_bytes(gpu)
    if overhead:
        how = LOCAL_RUNNER_LABEL
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
                gpu.budget_bytes, "evidence_class": how}
    if overhead:
        evidence["cuda_overhead_bytes"] = overhead
    if best.status != "ok":
        return _verdict(claim, FAILS, f"{how}: llama.cpp could not allocate at {quant} ({best.id})",
                        conditions=conditions, evidence=evidence, would_change="a run of higher precedence")
    terms = " + ".join([f"{name} {_gib2(v)}" for name, v in llamacpp_held_bytes(best).items()]
                       + ([f"CUDA overhead {_gib2(overhead)}"] if overhead else []))
    word = HOLDS if fitting else FAILS
    return _verdict(claim, word, f"{how}: {_gib2(held[best.id])} ({terms}) {'<=' if fitting else '>'} "
                    f"{_gib2(gpu.budget_bytes)} on {gpu.id} at {quant}, context {context[best.id]}, repack "
                    f"{'on' if engine.get('repack') else 'off'} ({best.id})", conditions=conditions,
                    evidence=evidence, would_change="a measurement on the device, or under a cap emulating it")


def _measured_memory(registry: Registry, claim: ClaimSpec, arithmetic: Verdict,
                     records: list[RunRecord]) -> Verdict:
    recipe = registry.recipe(claim.conditions.recipe) if claim.conditions.recipe else None
    card = registry.gpu(claim.conditions.gpu) if claim.conditions.gpu else None
    found = memory_evidence(records, claim, recipe, card)
    if not found:
        return arithmetic
    best = found[0]
    quant = engine_quant(best)
    unstated = []
    if claim.conditions.quant is None and quant not in (None, "bf16"):
        unstated.append(f"{'holds' if best.status == 'ok' else 'measured'} at {quant}; the quote states no quant")
    conditions = {**arithmetic.conditions, "quant": quant, "emulated": bool(best.hardware.get("emulated")),
                  "weights": best.model.weights, "unstated": unstated + [u for u in arithmetic.conditions.get(
                      "unstated", []) if "the quote states none" in u]}
    how = RANK_LABELS[rank(best)]
    evidence = {"records": [r.id for r in found], "decisive_record": best.id, "estimate": arithmetic.evidence}
    if is_llamacpp_on_cpu(best):
        assert card is not None  # memory_evidence admits llama.cpp runs only for a claim with a card
        return _llamacpp_budget(card, [r for r in found if rank(r) == 0], how, conditions, evidence, claim)
    peak = best.metrics.get("peak_memory_bytes")
    peak_text = _vllm_need_text(best) or (f", peak {_gib(peak.value)}" if peak and peak.value else "")
    if best.status == "ok":
        return _verdict(claim, HOLDS, f"{how}: ran at {quant}{peak_text} ({best.id})", conditions=conditions,
                        evidence=evidence, would_change="an out-of-memory in a run of higher precedence")
    return _verdict(claim, FAILS, f"{how}: out of memory at {quant} ({best.id})", conditions=conditions,
                    evidence=evidence, would_change="a successful run of higher precedence")


def _measured_speed(claim: ClaimSpec, arithmetic: Verdict, records: list[RunRecord]) -> Verdict:
    found = speed_evidence(records, claim)
    wanted = claim.threshold.decode_tokens_per_s
    if not found or wanted is None:
        return arithmetic
    best = found[0]
    measured = best.metrics["decode_tokens_per_s"].value
    word = HOLDS if measured >= wanted else FAILS
    return _verdict(claim, word, f"measured {measured:.1f} tokens/s at batch 1 vs claimed {wanted:g} ({best.id})",
                    conditions={**arithmetic.conditions, "quant": engine_quant(best)},
                    evidence={"records": [r.id for r in found], "roofline": arithmetic.evidence.get("roofline")})


def _runtime_command(model: ModelSpec) -> str:
    return f"bench run {model.id} --backend llama.cpp --quant q4_k_m --weights synthetic --device cpu"


def _runtime_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    """Whether a local runner runs the model is decided by running it; arithmetic only says whether
    llama.cpp has a GGUF architecture for the model's type at all."""
    model_type = model.architecture.model_type
    conditions = {"runner": claim.conditions.runner}
    if model_type not in LLAMA_CPP_MODEL_TYPES:
        return _verdict(claim, UNTESTED, f"bench knows no GGUF architecture for model_type {model_type}",
                        conditions=conditions, would_change="a GGUF file of the model that loads in llama.cpp")
    return _verdict(claim, UNTESTED, f"llama.cpp has a GGUF architecture for model_type {model_type}; no run has "
                    "loaded the model's shapes yet", conditions=conditions,
                    would_change=f"`{_runtime_command(model)}`: a run that loads and generates")


def _measured_runtime(claim: ClaimSpec, arithmetic: Verdict, records: list[RunRecord]) -> Verdict:
    """A llama.cpp run of the model's file (its real shapes, tensor names and metadata) that loaded and
    generated holds the claim; one that failed to load fails it. Ollama loads the same GGUF files with the
    same ggml code, so the same run decides an Ollama claim."""
    found = runtime_evidence(records, claim)
    if not found:
        return arithmetic
    best = found[0]
    engine = best.details.get("engine") or {}
    same = "; Ollama loads the same GGUF file with the same ggml code" if claim.conditions.runner == "ollama" else ""
    evidence = {"records": [r.id for r in found], "decisive_record": best.id}
    conditions = {**arithmetic.conditions, "quant": engine_quant(best), "weights": best.model.weights}
    if best.status == "ok":
        tokens = best.config.get("scenario", {}).get("output_len")
        return _verdict(claim, HOLDS, f"llama.cpp loaded the {best.model.weights} GGUF of {best.model.id} "
                        f"({engine.get('weights_format')}, {engine.get('n_ctx')} tokens of context) and generated "
                        f"{tokens} tokens per request{same} ({best.id})", conditions=conditions, evidence=evidence,
                        would_change="a failed load in a newer run")
    first_line = (best.error or "").splitlines()[0] if best.error else "no error text"
    return _verdict(claim, FAILS, f"llama.cpp could not run the {best.model.weights} GGUF of {best.model.id}: "
                    f"{first_line}{same} ({best.id})", conditions=conditions, evidence=evidence,
                    would_change="a newer llama.cpp that loads it")


_DECIDERS = {
    "inference-memory": _memory_claim,
    "finetune-memory": _memory_claim,
    "params": _params_claim,
    "license": _fact_claim,
    "open-weights": _fact_claim,
    "context": _fact_claim,
    "speed": _speed_claim,
    "runtime": _runtime_claim,
    "responsive": _responsive_claim,
}
