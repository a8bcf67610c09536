"""The report's tables as plain data: verdict counts, grouped claims, measured rows, CSV exports.

The templates only lay these out. Verdicts that contradict the page (fails,
refuted-by-arithmetic) come first everywhere, because they are what a reader came for;
the same claim repeated on a page (same subject, kind and stated conditions) is one
group under one verdict, so 19 identical license rows read as one row "x19".
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.records.stats import percentile
from bench.report.terminal import seconds
from bench.units import gib
from bench.verdicts.verdict import STRENGTH, VERDICTS, Verdict


@dataclass
class ClaimGroup:
    """Claims that say the same thing (subject, kind, stated conditions and threshold) and share a verdict."""

    verdict: Verdict  # the first claim's verdict, shown for the group
    claim_ids: list[str] = field(default_factory=list)
    quotes: list[str] = field(default_factory=list)


def group_key(verdict: Verdict, claim: Any) -> tuple:
    return (verdict.subject, verdict.kind, verdict.verdict, claim.conditions.model_dump_json(),
            claim.threshold.model_dump_json())


def grouped(verdicts: list[Verdict], claims: dict[str, Any]) -> list[ClaimGroup]:
    """One group per distinct claim, contradicting verdicts first, then in page order."""
    groups: dict[tuple, ClaimGroup] = {}
    for v in verdicts:
        group = groups.setdefault(group_key(v, claims[v.claim_id]), ClaimGroup(verdict=v))
        group.claim_ids.append(v.claim_id)
        if v.quote not in group.quotes:
            group.quotes.append(v.quote)
    return sorted(groups.values(), key=lambda g: STRENGTH[g.verdict.verdict])


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    """How many claims got each verdict word, in the contract's order (zeros kept, so columns line up)."""
    seen = Counter(v.verdict for v in verdicts)
    return {word: seen.get(word, 0) for word in VERDICTS}


def count_rows(verdicts: list[Verdict], claims: dict[str, Any], titles: dict[str, str]) -> list[dict[str, Any]]:
    """Verdict counts per page and, under each page, per product."""
    by_page: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        by_page[v.source].append(v)
    rows = []
    for source, page_verdicts in by_page.items():
        rows.append({"page": titles[source], "source": source, "product": None, **counts(page_verdicts),
                     "total": len(page_verdicts)})
        by_product: dict[str, list[Verdict]] = defaultdict(list)
        for v in page_verdicts:
            by_product[claims[v.claim_id].product].append(v)
        rows += [{"page": titles[source], "source": source, "product": product, **counts(vs), "total": len(vs)}
                 for product, vs in by_product.items()]
    return rows


MEASURED_COLUMNS = (
    # (metric, heading, formatter)
    ("ttft_s", "TTFT p50", seconds),
    ("itl_p50_s", "ITL p50", seconds),
    ("itl_p99_s", "ITL p99", seconds),
    ("decode_tokens_per_s", "decode tok/s (batch 1)", lambda v: f"{v:,.1f}"),
    ("throughput_tokens_per_s", "batch tok/s", lambda v: f"{v:,.1f}"),
    ("peak_memory_bytes", "peak memory", lambda v: gib(v, 2)),
    ("loss_first", "loss first", lambda v: f"{v:.4g}"),
    ("loss_last", "loss last", lambda v: f"{v:.4g}"),
    ("tokens_per_s", "train tok/s", lambda v: f"{v:,.1f}"),
)
# The samples a row's spread is read from, and how that spread is shown.
SPREAD_OF = (("decode_tokens_per_s", "decode tok/s", lambda v: f"{v:,.1f}"), ("ttft_s", "TTFT", seconds),
             ("step_time_s", "step time", seconds))


def ran_on(record: Any) -> str:
    """The machine a record measured on, said so a CPU run is never read as a card's: "AMD EPYC (CPU)",
    "NVIDIA H100 80GB HBM3, capped to rtx-4090's memory"."""
    hw = record.hardware
    if record.kind == "trace":  # no device ran it: fake tensors claiming one, on the CPU that traced them
        return f"fake {record.config.get('device')} tensors on {hw.get('cpu_model') or 'a CPU'} (CPU)"
    if hw.get("device") == "cpu":
        return f"{hw.get('cpu_model') or hw.get('device_name') or 'a CPU'} (CPU)"
    where = str(hw.get("device_name") or "a GPU")
    return where + (f", capped to {hw.get('target')}'s memory" if hw.get("emulated") else "")


def result_summary(record: Any) -> str:
    """What a record of a kind without the inference columns found, in one cell: a serve record's best
    level and one-user latency, an eval's scores with standard errors, a fine-tune's checks."""
    if record.kind == "serve":
        return _serve_summary(record)
    if record.kind == "eval":
        scores = record.metrics.get("scores")
        return "; ".join(score_lines(scores.value if scores is not None and scores.value else {}))
    if record.kind == "finetune":
        return finetune_checks(record)
    return ""


def _serve_summary(record: Any) -> str:
    levels = [level for level in record.details.get("levels", []) if level.get("output_tokens_per_s")]
    if not levels:
        return "no level completed a request"
    best = max(levels, key=lambda level: level["output_tokens_per_s"])
    text = f"best {best['output_tokens_per_s']:,.1f} output tok/s at {best['level']}"
    one = next((level for level in levels if level["level"] == "c1"), None)
    if one is not None and one.get("ttft_p90_s") is not None:
        text += f"; one user: TTFT p90 {seconds(one['ttft_p90_s'])}"
        if one.get("tpot_p90_s") is not None:
            text += f", TPOT p90 {seconds(one['tpot_p90_s'])}"
    return text


def score_lines(scores: dict[str, dict[str, float]]) -> list[str]:
    """One line per task: each score with its standard error (± one standard error)."""
    return [f"{task}: {_task_scores(values)}" for task, values in scores.items()]


def _task_scores(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" + (f" ± {values[k + '_stderr']:.3f}" if values.get(k + "_stderr") is not None
                                       else " (no standard error)")
                     for k, v in values.items() if not k.endswith("_stderr"))


def finetune_checks(record: Any) -> str:
    """The smoke test's four checks, each marked, and a preference run's reward figures where recorded."""
    m = record.metrics

    def value(name: str) -> Any:
        return m[name].value if name in m else None

    first, last = value("loss_first"), value("loss_last")
    marks = [("fits", record.status == "ok"),
             ("loss goes down" + (f" ({first:.3f} to {last:.3f})" if first is not None and last is not None else ""),
              first is not None and last is not None and last < first),
             ("adapter reloads", bool(value("adapter_reloaded"))),
             ("changes the model", bool(value("adapter_changes_output")))]
    text = ", ".join(f"{'✓' if ok else '✗'} {what}" for what, ok in marks)
    rewards = [f"{name.replace('_', ' ')} {m[name].value:.3f}" for name in sorted(m)
               if name.startswith("reward") and isinstance(m[name].value, (int, float))]
    return text + ("; " + ", ".join(rewards) if rewards else "")


def measured_row(record: Any, evidence_class: str) -> dict[str, Any]:
    """One record as a table row: formatted figures, the spread of its main samples, the sample count; where
    it ran and what it was judged against as two columns."""
    hw = record.hardware
    row: dict[str, Any] = {
        "id": record.id, "kind": record.kind, "model": record.model.id, "status": record.status,
        "weights": record.model.weights, "engine": (record.details.get("engine") or {}).get("engine") or "",
        "ran_on": ran_on(record), "target": hw.get("target") or "-",
        "device": hw.get("device_name") or hw.get("cpu_model") or "", "evidence": evidence_class,
        "result": result_summary(record), "started_at": record.started_at, "values": {}, "cells": {},
    }
    for name, _, fmt in MEASURED_COLUMNS:
        metric = record.metrics.get(name)
        if metric is not None and isinstance(metric.value, (int, float)):
            row["values"][name] = metric.value
            row["cells"][name] = fmt(metric.value)
    for name, label, fmt in SPREAD_OF:
        metric = record.metrics.get(name)
        if metric is not None and metric.samples:
            samples = metric.samples
            row["spread"] = f"{label} p10-p90 {fmt(percentile(samples, 10))} - {fmt(percentile(samples, 90))}"
            row["samples"] = len(samples)
            break
    return row


def columns_present(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (metric, heading) pairs that at least one row has a value for."""
    return [(name, heading) for name, heading, _ in MEASURED_COLUMNS if any(name in r["values"] for r in rows)]


def _cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula (=, +, -, @ first) is kept as text with a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def verdicts_csv(verdicts: list[Verdict], claims: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["claim", "page", "product", "kind", "speaker", "quote", "verdict", "evidence", "reason",
                     "records"])
    for v in verdicts:
        claim = claims[v.claim_id]
        writer.writerow([_cell(x) for x in (v.claim_id, v.source, claim.product, v.kind, claim.speaker, v.quote,
                                             v.verdict, v.evidence_class, v.reason,
                                             " ".join(v.evidence.get("records", [])))])
    return out.getvalue()


def measurements_csv(rows: list[dict[str, Any]]) -> str:
    """Raw values (seconds, tokens/s, bytes), not the formatted cells, so a spreadsheet can compute."""
    out = io.StringIO()
    writer = csv.writer(out)
    names = [name for name, _, _ in MEASURED_COLUMNS]
    writer.writerow(["record", "kind", "model", "status", "weights", "engine", "ran on", "judged against",
                     "evidence", "started_at"] + names + ["result", "spread", "samples"])
    for r in rows:
        writer.writerow([_cell(x) for x in [r["id"], r["kind"], r["model"], r["status"], r["weights"], r["engine"],
                                            r["ran_on"], r["target"], r["evidence"], r["started_at"]]]
                        + [r["values"].get(n, "") for n in names]
                        + [_cell(r["result"]), r.get("spread", ""), r.get("samples", "")])
    return out.getvalue()
