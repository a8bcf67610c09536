"""What a verdict rests on, in words: its evidence class and the number that decides it.

A reader weighs "refuted by an exact lower bound" differently from "plausible by an
estimate" or "held on the card itself", so every place a verdict is shown (the
`verdicts` table, `cite`, the HTML and Markdown reports) names its class with these
words. The class is read from the verdict's own fields (kind, word, evidence) and,
for measured verdicts, from the record that decided it; nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.evidence import RANK_LABELS, is_llamacpp_on_cpu, rank
from bench.results import RunRecord

REGISTRY_FACT = "registry fact"
ARITHMETIC_COUNT = "arithmetic: exact count from the architecture"
ARITHMETIC_LOWER_BOUND = "arithmetic lower bound"
ARITHMETIC_ESTIMATE = "arithmetic estimate"
ARITHMETIC_ROOFLINE = "arithmetic upper bound (bandwidth roofline)"
MEASURED_ON_CPU = "measured on CPU"
MEASURED_LLAMACPP_CPU = "measured on a CPU with llama.cpp"
LLAMACPP_PLUS_CUDA = "llama.cpp buffers measured on a CPU plus the planner's CUDA overhead"
MEASURED_LLAMACPP_CPU_PLUS_CUDA = "llama.cpp buffers measured on a CPU plus the planner's CUDA overhead"
MEASURED_SYNTHETIC = "measured with synthetic weights"
MEASURED_UNDER_CAP = "measured under a cap"
MEASURED_ON_CARD = "measured on the claimed card"
MEASURED_EVAL = "measured: lm-eval scores with standard errors"
NO_EVIDENCE = "no evidence yet"

# Short names of evidence.rank's classes; a rank added there without a name here shows its own label.
_RANK_CLASSES = {3: MEASURED_ON_CARD, 2: MEASURED_UNDER_CAP, 1: MEASURED_SYNTHETIC, 0: MEASURED_LLAMACPP_CPU}
_FACT_KINDS = ("license", "open-weights", "context")
_MEMORY_KINDS = ("inference-memory", "finetune-memory")


def record_class(record: RunRecord) -> str:
    """The class of one record as evidence, whatever claim it bears on."""
    if is_llamacpp_on_cpu(record):
        return MEASURED_LLAMACPP_CPU
    if record.hardware.get("device") == "cpu":
        return MEASURED_ON_CPU + (" with synthetic weights" if record.model.weights == "synthetic" else "")
    if record.model.weights == "synthetic":
        return MEASURED_SYNTHETIC
    if record.hardware.get("emulated"):
        return f"{MEASURED_UNDER_CAP} emulating {record.hardware.get('target')}"
    return "measured on " + str(record.hardware.get("device_name") or "a GPU")


def _decisive(verdict: Any, records: Mapping[str, RunRecord]) -> RunRecord | None:
    evidence = verdict.evidence or {}
    ids = [evidence.get("decisive_record")] + list(evidence.get("records") or [])
    return next((records[i] for i in ids if i and i in records), None)


def verdict_class(verdict: Any, records: Mapping[str, RunRecord]) -> str:
    """The evidence class of a verdict, in words (a registry fact names its source)."""
    evidence = verdict.evidence or {}
    if verdict.kind == "eval":
        return MEASURED_EVAL if evidence.get("comparisons") else NO_EVIDENCE
    if verdict.kind in _FACT_KINDS and "recorded" in evidence:
        source = evidence.get("source")
        return f"{REGISTRY_FACT} (source: {source})" if source else REGISTRY_FACT
    if verdict.kind == "params" and "counted" in evidence:
        return ARITHMETIC_COUNT
    if evidence.get("cuda_overhead_bytes"):  # a GPU claim naming a local runner (bench.verdicts._llamacpp_budget)
        return MEASURED_LLAMACPP_CPU_PLUS_CUDA
    record = _decisive(verdict, records)
    if record is not None and evidence.get("cuda_overhead_bytes"):  # a GPU claim naming a local runner
        return LLAMACPP_PLUS_CUDA
    if record is not None:
        return _RANK_CLASSES.get(rank(record)) or RANK_LABELS.get(rank(record), record_class(record))
    if verdict.kind in _MEMORY_KINDS and evidence.get("estimates"):
        return ARITHMETIC_LOWER_BOUND if verdict.verdict == "refuted-by-arithmetic" else ARITHMETIC_ESTIMATE
    if verdict.kind == "speed" and evidence.get("roofline"):
        return ARITHMETIC_ROOFLINE
    return NO_EVIDENCE


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB"


def deciding_number(verdict: Any, records: Mapping[str, RunRecord]) -> str:
    """The number the verdict hinges on, with its unit and what it is held against; "" when none."""
    evidence, cond = verdict.evidence or {}, verdict.conditions or {}
    if verdict.kind in _FACT_KINDS and "recorded" in evidence:
        return f"recorded {verdict.kind}: {evidence['recorded']} (the claim says {evidence.get('claimed')})"
    if verdict.kind == "params" and "counted" in evidence:
        counted = evidence["counted"]
        return f"{counted['total'] / 1e9:,.2f}B total, {counted['active'] / 1e9:,.2f}B active parameters"
    if evidence.get("held_bytes") is not None:
        plus = " with the CUDA overhead" if evidence.get("cuda_overhead_bytes") else ""
        return f"llama.cpp buffers{plus} {_gib(evidence['held_bytes'])} against {_gib(evidence['budget_bytes'])}"
    record = _decisive(verdict, records)
    if record is not None and verdict.kind in _MEMORY_KINDS:
        peak = record.metrics.get("peak_memory_bytes")
        what = "out of memory" if record.status == "oom" else (f"peak {_gib(peak.value)}" if peak and peak.value
                                                                 else "ran")
        return f"{what} on {record.hardware.get('target')} at {cond.get('quant')}"
    if record is not None and verdict.kind == "speed":
        return f"{record.metrics['decode_tokens_per_s'].value:,.1f} tokens/s measured at batch 1"
    estimates = evidence.get("estimates") or {}
    estimate = estimates.get(cond.get("quant")) or next(iter(estimates.values()), None)
    if estimate is not None:
        key = "lower_bound_bytes" if verdict.verdict == "refuted-by-arithmetic" else "total_bytes"
        what = "lower bound" if key == "lower_bound_bytes" else "estimate"
        return f"{what} {_gib(estimate[key])} of {_gib(estimate['budget_bytes'])} at {cond.get('quant')}"
    roofline = evidence.get("roofline") or {}
    if roofline.get("decode_tokens_per_s") is not None:
        return f"roofline {roofline['decode_tokens_per_s']:,.1f} tokens/s at batch 1"
    return ""
