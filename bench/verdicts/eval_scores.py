"""Eval claims ("beats X on MMLU"): each compared task's primary score against each compared model's, a gap
inside the combined standard error being a tie: ``holds`` when every comparison is a win, ``fails`` on
any loss or tie, ``untested`` while any record is missing. Arithmetic has nothing to say about quality:
records alone decide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec
from bench.evals.compare import Score, compare, primary_metric
from bench.verdicts.evidence import MEASURED_EVAL, NO_EVIDENCE, eval_record
from bench.verdicts.verdict import FAILS, HOLDS, UNTESTED, ClaimKind, Verdict, new_verdict

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord


def decide(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    return _eval_comparison(registry, claim, records)


def _eval_comparison(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    cond = claim.conditions
    conditions = {"tasks": cond.tasks, "compare_to": cond.compare_to}
    would_change = "bench eval records (real weights, no --limit) of every compared model on the same tasks"
    missing_models = [m for m in cond.compare_to if m not in registry.models]
    if missing_models:
        return new_verdict(claim, UNTESTED, f"compared models not in the registry: {', '.join(missing_models)}",
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
        return new_verdict(claim, UNTESTED, "missing eval evidence: " + "; ".join(missing), conditions=conditions,
                        evidence=evidence, would_change=would_change)
    if not outcomes:
        return new_verdict(claim, UNTESTED, "the claim names no tasks or models to compare", conditions=conditions)
    won = all(o.endswith("-> win") for o in outcomes)
    return new_verdict(claim, HOLDS if won else FAILS, "; ".join(outcomes), conditions=conditions, evidence=evidence,
                    would_change="new eval records; a tie within the combined standard error is not a win")


def _shots(record: RunRecord) -> Any:
    return record.metrics["num_fewshot"].value if "num_fewshot" in record.metrics else None


def evidence_class(verdict: Verdict, record: RunRecord | None) -> str:
    return MEASURED_EVAL if (verdict.evidence or {}).get("comparisons") else NO_EVIDENCE


def deciding_number(verdict: Verdict, record: RunRecord | None) -> str:
    return ""


def restate(registry: Registry, claim: ClaimSpec) -> str:
    cond = claim.conditions
    return (f"{claim.subject} scores above {', '.join(cond.compare_to) or 'the compared models'} on "
            f"{', '.join(cond.tasks) or 'the named tasks'}, beyond the combined standard error")


KIND = ClaimKind(("eval",), decide, evidence_class, deciding_number, restate)
