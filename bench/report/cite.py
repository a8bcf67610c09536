"""`bench cite`: a paste-ready Markdown citation of a claim's verdict or of one record.

A citation carries what a reader needs to judge and re-run the number: the value and
its unit, the conditions, the hardware (and whether it was emulated), the date, the
library versions, and the record id.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import UserError
from bench.registry import Registry
from bench.results import RunRecord, iter_records
from bench.verdicts import all_verdicts

CITED_METRICS = ("decode_tokens_per_s", "throughput_tokens_per_s", "ttft_s", "itl_p50_s", "itl_p99_s",
                 "peak_memory_bytes", "peak_allocated_bytes", "roofline_fraction", "loss_first", "loss_last",
                 "tokens_per_s", "adapter_reloaded")


def _value(value, unit: str) -> str:
    if unit == "bytes" and isinstance(value, (int, float)):
        return f"{value / 2**30:.2f} GiB"
    if isinstance(value, float):
        return f"{value:.4g} {unit}"
    return f"{value} {unit}"


def _hardware(record: RunRecord) -> str:
    hw = record.hardware
    device = hw.get("device_name") or hw.get("cpu_model") or "unknown device"
    if hw.get("emulated"):
        return f"{device}, memory capped to {hw.get('target')} (speed is the {device}'s)"
    return device + (f" (target {hw['target']})" if hw.get("target") else "")


def _versions(record: RunRecord) -> str:
    sw = record.software
    libs = ("vllm", "torch", "transformers", "peft", "trl", "lm_eval", "bitsandbytes")
    parts = [f"{k} {sw[k]}" for k in libs if sw.get(k)]
    commit = (sw.get("bench_commit") or "unknown")[:12]
    return ", ".join(parts + [f"bench {commit}"])


def cite_record(record: RunRecord) -> str:
    lines = [f"**{record.kind} of `{record.model.id}`** ({record.model.weights} weights, revision "
             f"`{record.model.resolved_revision or record.model.revision or 'local'}`): status **{record.status}**"]
    if record.status != "ok":
        lines.append(f"- error: {(record.error or '').strip().splitlines()[-1] if record.error else record.status}")
    for name in CITED_METRICS:
        if name in record.metrics:
            m = record.metrics[name]
            lines.append(f"- {name}: **{_value(m.value, m.unit)}**")
    if "scores" in record.metrics:
        for task, values in record.metrics["scores"].value.items():
            for metric, value in values.items():
                if not metric.endswith("_stderr"):
                    err = values.get(f"{metric}_stderr")
                    lines.append(f"- {task} {metric}: **{value:.3f}**" + (f" ± {err:.3f}" if err is not None else ""))
    scenario = record.config.get("scenario") or record.config.get("recipe") or record.config.get("eval") or {}
    shape = {k: scenario.get(k) for k in ("backend", "batch", "prompt_len", "output_len", "context", "id", "method",
                                          "quant", "tasks", "limit") if scenario.get(k) is not None}
    if shape:
        lines.append("- conditions: " + ", ".join(f"{k} {v}" for k, v in shape.items()))
    lines.append(f"- hardware: {_hardware(record)}")
    lines.append(f"- measured {record.started_at[:10]} with {_versions(record)}")
    lines.append(f"- record: `{record.id}` (re-run: see its `config`)")
    return "\n".join(lines)


def cite(registry: Registry, ident: str, results_dir: Path) -> str:
    records = list(iter_records(results_dir))
    for record in records:
        if record.id == ident:
            return cite_record(record)
    claim_ids = {c.id for _, c in registry.claims()}
    if ident not in claim_ids:
        raise UserError(f"{ident!r} is neither a claim id (see `bench verdicts`) nor a record in {results_dir}")
    verdict = next(v for v in all_verdicts(registry, records) if v.claim_id == ident)
    claim = registry.claim(ident)
    conditions = ", ".join(f"{k} {v}" for k, v in verdict.conditions.items() if v not in (None, [], ""))
    lines = [f"> \"{claim.quote}\" ({claim.speaker}, {verdict.source})", "",
             f"**Verdict: {verdict.verdict}.** {verdict.reason}.", f"- conditions: {conditions or 'none stated'}"]
    for rid in verdict.evidence.get("records", []):
        lines.append(f"- record: `{rid}`")
    if verdict.would_change:
        lines.append(f"- would change with: {verdict.would_change}")
    lines.append(f"- claim `{ident}`; check it yourself: `bench verdicts --json`")
    return "\n".join(lines)
