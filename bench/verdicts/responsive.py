""""Responsive" claims: a chat answers fast enough to start reading at once and streams as fast as one reads.

The convention (docs/metrics.md, "responsive"), with each threshold set in the claim's `threshold`:

* `ttft_s` (1 s by convention): the limit under which a user's flow of thought stays
  uninterrupted (Nielsen, "Response Times: The 3 Important Limits", 1993, after Miller 1968
  and Card et al. 1991).
* `tokens_per_s_per_user` (5.3 by convention): silent reading of English non-fiction,
  238 words/min (Brysbaert 2019, "How many words do we read per minute?", Journal of Memory
  and Language 109), at 0.75 words per token (OpenAI's rule of thumb for English text):
  238 / 0.75 / 60 = 5.3 tokens/s, so a TPOT of at most 1 / 5.3 = 0.19 s.

Decided by a `serve` record of the subject on the claim's card, at one user (the level
`c1`): `holds` when its TTFT p90 and TPOT p90 are both within (nine answers in ten feel
responsive), else `fails`. Without such a record, arithmetic: the batch-1 decode roofline
of the card below the reading rate is `refuted-by-arithmetic`, otherwise `plausible`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec, ModelSpec
from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.estimate.quant import weight_format
from bench.verdicts.evidence import ARITHMETIC_ROOFLINE, NO_EVIDENCE, measured_class
from bench.verdicts.speed import roofline_number
from bench.verdicts.verdict import FAILS, HOLDS, PLAUSIBLE, REFUTED, UNTESTED, ClaimKind, Verdict, new_verdict

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord

ONE_USER = "c1"


def decide(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    return measured_responsive(claim, responsive_by_arithmetic(registry, registry.model(claim.subject), claim), records)


def responsive_by_arithmetic(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    cond, t = claim.conditions, claim.threshold
    if cond.gpu is None or t.ttft_s is None or t.tokens_per_s_per_user is None:
        return new_verdict(claim, UNTESTED, "a responsive claim needs a card, a TTFT and a reading rate")
    gpu = registry.gpu(cond.gpu)
    quant = cond.quant or min(model.quants, key=lambda q: weight_format(q).bits_per_weight)
    plan = make_plan(PlanRequest(Subject.from_spec(model), gpu, quant, cond.context, 1))
    bound = plan["roofline"]["decode_tokens_per_s"]
    conditions = {"gpu": gpu.id, "quant": quant, "context": plan["context"], "users": 1,
                  "ttft_s": t.ttft_s, "tokens_per_s_per_user": t.tokens_per_s_per_user}
    evidence = {"roofline": plan["roofline"]}
    if bound < t.tokens_per_s_per_user:
        return new_verdict(claim, REFUTED, f"roofline bound {bound:.1f} tokens/s at one user < reading rate "
                        f"{t.tokens_per_s_per_user:g}", conditions=conditions, evidence=evidence)
    return new_verdict(claim, PLAUSIBLE, f"roofline bound {bound:.1f} tokens/s at one user >= reading rate "
                    f"{t.tokens_per_s_per_user:g}; TTFT needs a measurement", conditions=conditions,
                    evidence=evidence, would_change="a bench serve record on the card at concurrency 1")


def serve_evidence(records: list[RunRecord], claim: ClaimSpec) -> list[RunRecord]:
    """ok serve sweeps of the subject on the claim's card with a one-user level, latest first."""
    found = [r for r in records if r.kind == "serve" and r.status == "ok" and r.model.id == claim.subject
             and r.hardware.get("target") == claim.conditions.gpu and f"ttft_p90_s@{ONE_USER}" in r.metrics
             and f"tpot_p90_s@{ONE_USER}" in r.metrics]
    return sorted(found, key=lambda r: r.started_at, reverse=True)


def measured_responsive(claim: ClaimSpec, arithmetic: Verdict, records: list[RunRecord]) -> Verdict:
    found = serve_evidence(records, claim)
    t = claim.threshold
    if not found or t.ttft_s is None or t.tokens_per_s_per_user is None:
        return arithmetic
    best = found[0]
    ttft, tpot = best.metrics[f"ttft_p90_s@{ONE_USER}"].value, best.metrics[f"tpot_p90_s@{ONE_USER}"].value
    max_tpot = 1 / t.tokens_per_s_per_user
    ok = ttft <= t.ttft_s and tpot <= max_tpot
    engine = best.details.get("engine") or {}
    reason = (f"measured at one user on {engine.get('kind') or 'a server'}: TTFT p90 {ttft:.2f} s "
              f"{'<=' if ttft <= t.ttft_s else '>'} {t.ttft_s:g} s, TPOT p90 {tpot * 1000:.0f} ms "
              f"{'<=' if tpot <= max_tpot else '>'} {max_tpot * 1000:.0f} ms (reading rate "
              f"{t.tokens_per_s_per_user:g} tokens/s) ({best.id})")
    conditions = {**arithmetic.conditions, "server": engine.get("kind"),
                  "quant": (best.details.get("quant") or arithmetic.conditions.get("quant"))}
    return new_verdict(claim, HOLDS if ok else FAILS, reason, conditions=conditions,
                    evidence={"records": [r.id for r in found], "decisive_record": best.id,
                              "roofline": arithmetic.evidence.get("roofline")},
                    would_change="a later serve record on the card at one user")


def evidence_class(verdict: Verdict, record: RunRecord | None) -> str:
    if record is not None:
        return measured_class(record)
    return ARITHMETIC_ROOFLINE if (verdict.evidence or {}).get("roofline") else NO_EVIDENCE


def deciding_number(verdict: Verdict, record: RunRecord | None) -> str:
    return roofline_number(verdict)


def restate(registry: Registry, claim: ClaimSpec) -> str:
    t, card = claim.threshold, claim.conditions.gpu or "a card the quote does not name"
    return (f"{claim.subject} answers one user on {card} with its first token within {t.ttft_s or 0:g} s (p90) "
            f"and streams at least {t.tokens_per_s_per_user or 0:g} tokens/s (reading speed)")


KIND = ClaimKind(("responsive",), decide, evidence_class, deciding_number, restate)
