"""Parameter-count claims ("a 22B model"): the count from the architecture is exact, so within the
claim's tolerance it ``holds`` and outside it is ``refuted-by-arithmetic``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec, ModelSpec
from bench.estimate.plan import Subject
from bench.verdicts.evidence import ARITHMETIC_COUNT, NO_EVIDENCE
from bench.verdicts.verdict import HOLDS, REFUTED, UNTESTED, ClaimKind, Verdict, new_verdict

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord


def decide(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    return _params_claim(registry, registry.model(claim.subject), claim)


def _params_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    counts = Subject.from_spec(model).params
    t = claim.threshold
    checks = [(name, claimed, counted) for name, claimed, counted in
              (("total", t.total_params, counts.total), ("active", t.active_params, counts.active))
              if claimed is not None]
    if not checks:
        return new_verdict(claim, UNTESTED, "the claim states no parameter count")
    evidence = {"counted": {"total": counts.total, "active": counts.active, "text": counts.text},
                "published": model.published_params}
    if model.proxy:
        return new_verdict(claim, UNTESTED, f"the model's size is undisclosed; {model.proxy}", evidence=evidence,
                        would_change="published weights or an official parameter count")
    off = [f"{name} {counted / 1e9:.2f}B vs claimed {claimed / 1e9:.3g}B"
           for name, claimed, counted in checks if abs(counted - claimed) > t.tolerance * claimed]
    if off:
        return new_verdict(claim, REFUTED, "counted from the architecture: " + "; ".join(off), evidence=evidence,
                        conditions={"tolerance": t.tolerance})
    counted_text = "; ".join(f"{name} {counted / 1e9:.2f}B" for name, _, counted in checks)
    return new_verdict(claim, HOLDS, f"counted from the architecture: {counted_text} (within {t.tolerance:.0%})",
                    evidence=evidence, conditions={"tolerance": t.tolerance})


def evidence_class(verdict: Verdict, record: RunRecord | None) -> str:
    return ARITHMETIC_COUNT if "counted" in (verdict.evidence or {}) else NO_EVIDENCE


def deciding_number(verdict: Verdict, record: RunRecord | None) -> str:
    counted = (verdict.evidence or {}).get("counted")
    if counted is None:
        return ""
    return f"{counted['total'] / 1e9:,.2f}B total, {counted['active'] / 1e9:,.2f}B active parameters"


def restate(registry: Registry, claim: ClaimSpec) -> str:
    t = claim.threshold
    counts = [f"{value / 1e9:,.3g}B {name} parameters" for name, value in
              (("total", t.total_params), ("active", t.active_params)) if value is not None]
    if not counts:
        return f"{claim.subject} has a parameter count the quote does not state"
    return f"{claim.subject} has {' and '.join(counts)} (within {t.tolerance:.0%})"


KIND = ClaimKind(("params",), decide, evidence_class, deciding_number, restate)
