"""Decode-speed claims ("40 tokens/s on a 4090"): ``refuted-by-arithmetic`` above the bandwidth roofline,
else ``plausible``, until a run on the claimed card itself (a capped larger card's speed is not the
claim's) ``holds`` or ``fails`` it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec, ModelSpec
from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.estimate.quant import weight_format
from bench.verdicts.evidence import ARITHMETIC_ROOFLINE, NO_EVIDENCE, engine_quant, measured_class, speed_evidence
from bench.verdicts.verdict import FAILS, HOLDS, PLAUSIBLE, REFUTED, UNTESTED, ClaimKind, Verdict, new_verdict

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord


def decide(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    return _measured_speed(claim, _speed_claim(registry, registry.model(claim.subject), claim), records)


def _speed_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    cond, wanted = claim.conditions, claim.threshold.decode_tokens_per_s
    if cond.gpu is None or wanted is None:
        return new_verdict(claim, UNTESTED, "a speed claim needs a card and a tokens/s figure to check")
    gpu = registry.gpu(cond.gpu)
    quant = cond.quant or min(model.quants, key=lambda q: weight_format(q).bits_per_weight)
    plan = make_plan(PlanRequest(Subject.from_spec(model), gpu, quant, cond.context, cond.batch or 1))
    bound = plan["roofline"]["decode_tokens_per_s"]
    evidence = {"roofline": plan["roofline"]}
    conditions = {"gpu": gpu.id, "quant": quant, "context": plan["context"], "batch": plan["batch"]}
    if bound < wanted:
        return new_verdict(claim, REFUTED, f"roofline bound {bound:.1f} tokens/s < claimed {wanted:g}",
                        evidence=evidence, conditions=conditions)
    return new_verdict(claim, PLAUSIBLE, f"roofline bound {bound:.1f} tokens/s >= claimed {wanted:g}",
                    evidence=evidence, conditions=conditions, would_change="a measured run on the card")


def _measured_speed(claim: ClaimSpec, arithmetic: Verdict, records: list[RunRecord]) -> Verdict:
    found = speed_evidence(records, claim)
    wanted = claim.threshold.decode_tokens_per_s
    if not found or wanted is None:
        return arithmetic
    best = found[0]
    measured = best.metrics["decode_tokens_per_s"].value
    word = HOLDS if measured >= wanted else FAILS
    return new_verdict(claim, word, f"measured {measured:.1f} tokens/s at batch 1 vs claimed {wanted:g} ({best.id})",
                    conditions={**arithmetic.conditions, "quant": engine_quant(best)},
                    evidence={"records": [r.id for r in found], "roofline": arithmetic.evidence.get("roofline")})


def evidence_class(verdict: Verdict, record: RunRecord | None) -> str:
    if record is not None:
        return measured_class(record)
    return ARITHMETIC_ROOFLINE if (verdict.evidence or {}).get("roofline") else NO_EVIDENCE


def deciding_number(verdict: Verdict, record: RunRecord | None) -> str:
    if record is not None:
        return f"{record.metrics['decode_tokens_per_s'].value:,.1f} tokens/s measured at batch 1"
    return roofline_number(verdict)


def roofline_number(verdict: Verdict) -> str:
    """The batch-1 decode roofline a verdict was held against, "" when it has none."""
    roofline = (verdict.evidence or {}).get("roofline") or {}
    if roofline.get("decode_tokens_per_s") is None:
        return ""
    return f"roofline {roofline['decode_tokens_per_s']:,.1f} tokens/s at batch 1"


def restate(registry: Registry, claim: ClaimSpec) -> str:
    cond, wanted = claim.conditions, claim.threshold.decode_tokens_per_s
    card = f" on {cond.gpu}" if cond.gpu else ""
    return f"{claim.subject} decodes at least {wanted or 0:,g} tokens/s for one request{card}"


KIND = ClaimKind(("speed",), decide, evidence_class, deciding_number, restate)
