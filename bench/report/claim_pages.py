"""One page per claim, the measured tables and the CSV/Markdown exports of `bench report`.

A claim page is what a reviewer links to: the quote, the verdict with its evidence class,
the number it hinges on, what would change it, the claims that repeat it, and every
record that bears on it (its evidence first, then the subject's other runs), each linked.
Claim ids come from the claims files; only plain names become file names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import Environment

from bench.config.registry import Registry
from bench.records.schema import RunRecord
from bench.report import tables
from bench.verdicts.decide import deciding_number
from bench.verdicts.evidence import CLASSES_STRONGEST_FIRST, record_class
from bench.verdicts.verdict import MEANINGS, Verdict

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
# Rows a claim page lists in full: its best evidence, and the subject's newest other runs. A nightly
# results folder holds thousands of runs of one model; the measurements table lists them all.
EVIDENCE_SHOWN, OTHERS_SHOWN = 20, 10


def page_name(claim_id: str) -> str | None:
    """`claims/<id>` for an id that is a plain file name, else None (the claim gets no page)."""
    return f"claims/{claim_id}" if _PLAIN_NAME.fullmatch(claim_id) and ".." not in claim_id else None


def measured_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    return [tables.measured_row(r, record_class(r)) for r in sorted(records, key=lambda r: r.started_at)]


def write_claim_pages(env: Environment, out_dir: Path, registry: Registry, verdicts: list[Verdict],
                      records: list[RunRecord], rows: dict[str, dict[str, Any]], page_links: dict[str, str]
                      ) -> dict[str, str]:
    """Write claims/<id>.html and .md for each claim; returns claim id -> page name (without extension)."""
    claims = {c.id: c for _, c in registry.claims()}
    groups = tables.grouped(verdicts, claims)
    group_of = {cid: g for g in groups for cid in g.claim_ids}
    by_id = {r.id: r for r in records}
    newest_first: dict[str, list[str]] = {}  # a subject's record ids, newest first: read once, not per claim
    for record in sorted(records, key=lambda r: r.started_at, reverse=True):
        newest_first.setdefault(record.model.id, []).append(record.id)
    titles = {s.source: s.title for s in registry.claim_sources}
    (out_dir / "claims").mkdir(exist_ok=True)
    names = {}
    for v in verdicts:
        name = page_name(v.claim_id)
        if name is None:
            continue
        evidence_ids = [i for i in v.evidence.get("records", []) if i in rows]  # best first
        bearing = set(evidence_ids)
        others = [i for i in newest_first.get(v.subject, []) if i not in bearing]
        more = {"evidence_more": max(len(evidence_ids) - EVIDENCE_SHOWN, 0),
                "others_more": max(len(others) - OTHERS_SHOWN, 0)}
        evidence_ids, others = evidence_ids[:EVIDENCE_SHOWN], others[:OTHERS_SHOWN]
        context = {**more,
            "v": v, "claim": claims[v.claim_id], "page_title": titles[v.source],
            "page_link": page_links.get(v.source), "number": deciding_number(v, by_id),
            "repeats": [c for c in group_of[v.claim_id].claim_ids if c != v.claim_id],
            "evidence_rows": [rows[i] for i in evidence_ids], "other_rows": [rows[i] for i in others],
            "columns": tables.columns_present([rows[i] for i in evidence_ids + others]),
        }
        for ext in ("html", "md"):
            (out_dir / f"{name}.{ext}").write_text(env.get_template(f"claim.{ext}.j2").render(**context))
        names[v.claim_id] = name
    return names


def write_exports(env: Environment, out_dir: Path, registry: Registry, verdicts: list[Verdict],
                  rows: list[dict[str, Any]]) -> list[str]:
    """verdicts.csv, measurements.csv and measurements.md; returns their file names."""
    claims = {c.id: c for _, c in registry.claims()}
    (out_dir / "verdicts.csv").write_text(tables.verdicts_csv(verdicts, claims))
    (out_dir / "measurements.csv").write_text(tables.measurements_csv(rows))
    (out_dir / "measurements.md").write_text(env.get_template("measurements.md.j2").render(
        rows=rows, columns=tables.columns_present(rows)))
    return ["verdicts.csv", "measurements.csv", "measurements.md"]


def index_context(registry: Registry, verdicts: list[Verdict]) -> dict[str, Any]:
    """What the index adds: verdict counts per page and product, and the grouped claims, contradictions first."""
    claims = {c.id: c for _, c in registry.claims()}
    titles = {s.source: s.title for s in registry.claim_sources}
    return {"count_rows": tables.count_rows(verdicts, claims, titles), "totals": tables.counts(verdicts),
            "groups": tables.grouped(verdicts, claims), "verdict_words": list(tables.counts([])),
            "page_titles": titles, "verdict_meanings": MEANINGS, "evidence_classes": CLASSES_STRONGEST_FIRST}
