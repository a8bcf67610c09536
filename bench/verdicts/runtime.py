""""Runs in llama.cpp/Ollama" claims, decided by a llama.cpp run of the model's GGUF file; arithmetic only
says whether llama.cpp has a GGUF architecture for the model's type at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec, ModelSpec
from bench.estimate.gguf import LLAMA_CPP_MODEL_TYPES
from bench.verdicts.evidence import NO_EVIDENCE, engine_quant, measured_class, runtime_evidence
from bench.verdicts.verdict import FAILS, HOLDS, UNTESTED, ClaimKind, Verdict, new_verdict

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord


def decide(registry: Registry, claim: ClaimSpec, records: list[RunRecord]) -> Verdict:
    return _measured_runtime(claim, _runtime_claim(registry, registry.model(claim.subject), claim), records)


def _runtime_command(model: ModelSpec) -> str:
    return f"bench run {model.id} --backend llama.cpp --quant q4_k_m --weights synthetic --device cpu"


def _runtime_claim(registry: Registry, model: ModelSpec, claim: ClaimSpec) -> Verdict:
    """Whether a local runner runs the model is decided by running it; arithmetic only says whether
    llama.cpp has a GGUF architecture for the model's type at all."""
    model_type = model.architecture.model_type
    conditions = {"runner": claim.conditions.runner}
    if model_type not in LLAMA_CPP_MODEL_TYPES:
        return new_verdict(claim, UNTESTED, f"bench knows no GGUF architecture for model_type {model_type}",
                        conditions=conditions, would_change="a GGUF file of the model that loads in llama.cpp")
    return new_verdict(claim, UNTESTED, f"llama.cpp has a GGUF architecture for model_type {model_type}; no run has "
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
        return new_verdict(claim, HOLDS, f"llama.cpp loaded the {best.model.weights} GGUF of {best.model.id} "
                        f"({engine.get('weights_format')}, {engine.get('n_ctx')} tokens of context) and generated "
                        f"{tokens} tokens per request{same} ({best.id})", conditions=conditions, evidence=evidence,
                        would_change="a failed load in a newer run")
    first_line = (best.error or "").splitlines()[0] if best.error else "no error text"
    return new_verdict(claim, FAILS, f"llama.cpp could not run the {best.model.weights} GGUF of {best.model.id}: "
                    f"{first_line}{same} ({best.id})", conditions=conditions, evidence=evidence,
                    would_change="a newer llama.cpp that loads it")


def evidence_class(verdict: Verdict, record: RunRecord | None) -> str:
    return measured_class(record) if record is not None else NO_EVIDENCE


def deciding_number(verdict: Verdict, record: RunRecord | None) -> str:
    return ""


def restate(registry: Registry, claim: ClaimSpec) -> str:
    return f"{claim.subject} loads and generates in {claim.conditions.runner or 'a local runner'}"


KIND = ClaimKind(("runtime",), decide, evidence_class, deciding_number, restate)
