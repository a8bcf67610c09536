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
from bench.verdicts.verdict import VERDICTS, Verdict

# Verdicts ordered by how much a reader needs to see them: the page is contradicted first.
ORDER = {"fails": 0, "refuted-by-arithmetic": 1, "untested": 2, "plausible": 3, "holds": 4}


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
    return sorted(groups.values(), key=lambda g: ORDER.get(g.verdict.verdict, 9))


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


def measured_row(record: Any, evidence_class: str) -> dict[str, Any]:
    """One record as a table row: formatted figures, the spread of its main samples, the sample count."""
    hw = record.hardware
    row: dict[str, Any] = {
        "id": record.id, "kind": record.kind, "model": record.model.id, "status": record.status,
        "weights": record.model.weights, "engine": (record.details.get("engine") or {}).get("engine") or "",
        "card": hw.get("target") or hw.get("device_name") or hw.get("cpu_model") or "",
        "device": hw.get("device_name") or hw.get("cpu_model") or "", "evidence": evidence_class,
        "started_at": record.started_at, "values": {}, "cells": {},
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
    writer.writerow(["record", "kind", "model", "status", "weights", "engine", "card", "evidence", "started_at"]
                    + names + ["spread", "samples"])
    for r in rows:
        writer.writerow([_cell(x) for x in [r["id"], r["kind"], r["model"], r["status"], r["weights"], r["engine"],
                                            r["card"], r["evidence"], r["started_at"]]]
                        + [r["values"].get(n, "") for n in names] + [r.get("spread", ""), r.get("samples", "")])
    return out.getvalue()
