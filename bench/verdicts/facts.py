"""License, open-weights and context claims, decided by the registry's recorded facts (each with its
source): ``holds`` or ``fails``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec, ModelSpec
from bench.verdicts.evidence import NO_EVIDENCE, REGISTRY_FACT
from bench.verdicts.verdict import FAILS, HOLDS, UNTESTED, ClaimKind, Verdict, new_verdict

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord

# What a quote calling a license "permissive" admits: OSI licenses without use restrictions.
# The Llama 4 Community License (acceptable-use policy, 700M-user clause) and Mistral's research
# license are not among them.
PERMISSIVE_LICENSES = {"apache-2.0", "mit", "bsd-3-clause"}


def decide(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    return _fact_claim(registry, registry.model(claim.subject), claim)


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
        return new_verdict(claim, UNTESTED, f"the claim states no {claim.kind} value")
    evidence = {"recorded": recorded, "claimed": claimed, "source": fact_source(model, claim.kind),
                "findings": [f.fact for f in model.findings]}
    reason = f"registry records {claim.kind} {_said(recorded)}; the claim says {_said(claimed)}"
    return new_verdict(claim, HOLDS if ok else FAILS, reason, evidence=evidence,
                    would_change="a correction to the registry entry, with its source")


def _said(value: object) -> str:
    """A recorded or claimed fact as a reader writes it: yes/no, a quoted name, a number with separators."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return repr(value)


def evidence_class(verdict: Verdict, record: RunRecord | None) -> str:
    evidence = verdict.evidence or {}
    if "recorded" not in evidence:
        return NO_EVIDENCE
    source = evidence.get("source")
    return f"{REGISTRY_FACT} (source: {source})" if source else REGISTRY_FACT


def deciding_number(verdict: Verdict, record: RunRecord | None) -> str:
    evidence = verdict.evidence or {}
    if "recorded" not in evidence:
        return ""
    return f"recorded {verdict.kind}: {evidence['recorded']} (the claim says {evidence.get('claimed')})"


def restate(registry: Registry, claim: ClaimSpec) -> str:
    t = claim.threshold
    if claim.kind == "license":
        which = f"a permissive license ({', '.join(sorted(PERMISSIVE_LICENSES))})" if t.license == "permissive" \
            else f"the {t.license} license"
        return f"{claim.subject}'s weights ship under {which}"
    if claim.kind == "open-weights":
        return f"{claim.subject}'s weights {'can' if t.open_weights else 'cannot'} be downloaded"
    return f"{claim.subject} supports {t.context_tokens or 0:,} tokens of context"


KIND = ClaimKind(("license", "open-weights", "context"), decide, evidence_class, deciding_number, restate)
