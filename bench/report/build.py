"""`bench report`: the index, one page per seed comparison, plots, and the records they cite.

Records are read once into memory (and once into one pandas frame for the leaderboard);
verdicts are computed once; every page is rendered from that. Templates autoescape, so
text quoted from review pages is shown as text, never markup. Every record a page cites
is copied under `records/`, so each number links to its source and the site works offline.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader

from bench.config.registry import Registry
from bench.errors import UserError
from bench.records.frame import records_frame
from bench.records.schema import RunRecord
from bench.records.store import iter_record_files
from bench.report import claim_pages, plots, tables
from bench.report.regressions import Thresholds, describe_key, history_changes
from bench.report.sanitize import markdown_text, safe_url
from bench.report.serve import serve_curves
from bench.units import gib
from bench.verdicts.decide import all_verdicts
from bench.verdicts.evidence import engine_quant
from bench.verdicts.verdict import Verdict

PROVENANCE_LIBS = ("torch", "transformers", "vllm", "peft", "trl", "lm_eval", "bitsandbytes")


@dataclass(frozen=True)
class ReportSummary:
    out_dir: Path
    pages: list[Path]
    records: int
    regressions: int


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("bench.report", "templates"),
                      autoescape=lambda name: name is None or ".html" in name, trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = markdown_text
    env.filters["url"] = safe_url
    env.filters["gib"] = gib
    env.filters["num"] = lambda n, digits=3: "-" if n is None else f"{n:,.{digits}g}"
    return env


def _provenance(record: RunRecord) -> dict[str, Any]:
    hw, sw = record.hardware, record.software
    return {"id": record.id, "device": tables.ran_on(record), "target": hw.get("target"),
            "emulated": hw.get("emulated"), "driver": hw.get("driver"), "cuda": hw.get("cuda_runtime"),
            "libs": ", ".join(f"{k} {sw[k]}" for k in PROVENANCE_LIBS if sw.get(k)),
            "revision": record.model.resolved_revision or record.model.revision, "weights": record.model.weights,
            "commit": (sw.get("bench_commit") or "")[:12], "started_at": record.started_at}


def _memory_rows(verdicts: list[Verdict], records: dict[str, RunRecord], registry: Registry) -> list[dict]:
    """One row per memory claim, every figure of the configuration that decided it: the estimate at the
    verdict's quant and context (absent, and said so, where none was made), the measured bytes that decided
    (llama.cpp's buffers, else the run's peak), and the budget judged against."""
    rows = []
    for v in verdicts:
        if v.kind not in ("inference-memory", "finetune-memory") or not v.conditions.get("gpu"):
            continue
        estimates = v.evidence.get("estimates") or (v.evidence.get("estimate") or {}).get("estimates") or {}
        quant, context = v.conditions.get("quant"), v.conditions.get("context")
        estimate = estimates.get(quant)
        measured, measured_as = v.evidence.get("held_bytes"), "llama.cpp buffers"
        if measured is None:
            decisive = records.get(v.evidence.get("decisive_record", ""))
            peak = decisive.metrics.get("peak_memory_bytes") if decisive else None
            measured, measured_as = (peak.value, "peak") if peak and peak.value else (None, "")
        if estimate is None and measured is None:
            continue
        shape = f"{quant}, {context:,} tokens" if context else str(quant)
        rows.append({"label": f"{v.claim_id} ({shape})" + ("" if estimate else "; no estimate at this quant"),
                     "claim": v.claim_id, "quant": quant, "context": context,
                     "estimate": estimate["total_bytes"] if estimate else None,
                     "measured": measured, "measured_as": measured_as, "judged_against": v.conditions["gpu"],
                     "budget": registry.gpu(v.conditions["gpu"]).budget_bytes,
                     "decisive_record": v.evidence.get("decisive_record")})
    return rows


def _latest_by(records: list[RunRecord], key) -> list[RunRecord]:
    """The latest ok record of each key, so a plot has one bar per configuration, not per run."""
    latest: dict[Any, RunRecord] = {}
    for record in sorted((r for r in records if r.status == "ok"), key=lambda r: r.started_at):
        latest[key(record)] = record
    return [latest[k] for k in sorted(latest, key=str)]


def _speed_rows(records: list[RunRecord]) -> list[dict]:
    runs = _latest_by([r for r in records if r.kind == "inference" and "decode_tokens_per_s" in r.metrics],
                      lambda r: (r.model.id, r.hardware.get("target") or r.hardware.get("device_name"),
                                 engine_quant(r), r.config.get("scenario", {}).get("backend")))
    rows = []
    for r in runs:
        bound = r.metrics.get("roofline_decode_tokens_per_s")
        rows.append({"label": f"{r.model.id} {engine_quant(r)} on {tables.ran_on(r)}", "record": r.id,
                     "measured": r.metrics["decode_tokens_per_s"].value, "roofline": bound.value if bound else None})
    return rows


def _speed_title(rows: list[dict]) -> str:
    """The plot promises a roofline only where one was computed: a CPU run has none (no bandwidth profile)."""
    if rows and all(r["roofline"] is None for r in rows):
        return "Decode speed at batch 1 (no roofline: these ran on a CPU, which has no bandwidth profile)"
    return "Decode speed against the bandwidth roofline of the card it ran on"


def _latency_rows(records: list[RunRecord]) -> list[dict]:
    """The latest ok inference run per model, backend and card: TTFT and ITL in ms, throughputs in tokens/s."""
    runs = _latest_by([r for r in records if r.kind == "inference" and "ttft_s" in r.metrics],
                      lambda r: (r.model.id, r.config.get("scenario", {}).get("backend"),
                                 r.hardware.get("target") or r.hardware.get("device_name")))
    rows = []
    for r in runs:
        m = r.metrics
        rows.append({"label": f"{r.model.id} {r.config.get('scenario', {}).get('backend')} on {tables.ran_on(r)}",
                     "ttft_ms": m["ttft_s"].value * 1e3,
                     "itl_ms": m["itl_p50_s"].value * 1e3 if "itl_p50_s" in m else None,
                     "decode": m["decode_tokens_per_s"].value if "decode_tokens_per_s" in m else None,
                     "batch": m["throughput_tokens_per_s"].value if "throughput_tokens_per_s" in m else None})
    return rows


def _loss_rows(records: list[RunRecord]) -> list[dict]:
    """The latest ok fine-tune per model and recipe: its loss at every step (and a preference run's
    chosen and rejected rewards, where recorded)."""
    runs = _latest_by([r for r in records if r.kind == "finetune" and r.metrics.get("loss_last")
                       and r.metrics["loss_last"].samples],
                      lambda r: (r.model.id, r.config.get("recipe", {}).get("id")))
    rows = []
    for r in runs:
        recipe = r.config.get("recipe", {}).get("id")
        series = {"loss": r.metrics["loss_last"].samples}
        for name in ("reward_chosen", "reward_rejected"):
            if r.metrics.get(name) and r.metrics[name].samples:
                series[name.replace("_", " ")] = r.metrics[name].samples
        rows += [{"label": f"{r.model.id} {recipe}", "record": r.id, "series": name, "step": step, "value": value}
                 for name, values in series.items() for step, value in enumerate(values, 1)]
    return rows


def _score_rows(records: list[RunRecord]) -> list[dict]:
    rows = []
    for r in _latest_by([r for r in records if r.kind == "eval"], lambda r: (r.model.id, r.model.weights)):
        for task, values in r.metrics["scores"].value.items():
            for name, value in values.items():
                if not name.endswith("_stderr") and f"{name}_stderr" in values:
                    rows.append({"label": f"{r.model.id} {task} {name}", "value": value,
                                 "stderr": values[f"{name}_stderr"]})
    return rows


def _product(name: str, verdicts: list[Verdict], claims: dict[str, Any]) -> dict[str, Any]:
    """A product's section of a page: its verdict counts and its claims grouped, contradictions first."""
    return {"name": name, "counts": tables.counts(verdicts), "groups": tables.grouped(verdicts, claims)}


def refuse_out_inside_results(out_dir: Path, results_dir: Path) -> None:
    """A report written inside the results folder would copy every record into it (`records/`), to be read
    back as records by the next command (and copied onto itself by this one): refuse it before any work."""
    out, results = out_dir.resolve(), results_dir.resolve()
    if out.is_relative_to(results):
        raise UserError(f"--out {out_dir} is inside the results folder {results_dir}; write the report elsewhere")


def build_report(registry: Registry, results_dir: Path, out_dir: Path, config_dir: Path) -> ReportSummary:
    refuse_out_inside_results(out_dir, results_dir)
    found = list(iter_record_files(results_dir))  # read once, so each skipped file is warned about once
    records = [record for _, record in found]
    by_id = {r.id: r for r in records}
    verdicts = all_verdicts(registry, records)
    changes = history_changes(records, Thresholds.from_config(config_dir))
    env = _environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "records").mkdir(exist_ok=True)
    for path, record in found:  # the file it was read from; its id, checked to be that file's name, names the copy
        shutil.copyfile(path, out_dir / "records" / f"{record.id}.json")

    pages, page_links = [], {s.source: registry.claim_slugs[s.source] for s in registry.claim_sources}
    claims = {c.id: c for _, c in registry.claims()}
    measured = claim_pages.measured_rows(records)
    rows_by_id = {r["id"]: r for r in measured}
    claim_links = claim_pages.write_claim_pages(env, out_dir, registry, verdicts, records, rows_by_id, page_links)
    exports = claim_pages.write_exports(env, out_dir, registry, verdicts, measured)
    by_source: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        by_source[v.source].append(v)
    for source in registry.claim_sources:
        slug = page_links[source.source]
        subjects = sorted({c.subject for c in source.claims})
        page_records = [r for r in records if r.model.id in subjects]
        page_verdicts = by_source[source.source]
        plot_dir = out_dir / "plots"
        speed_rows = _speed_rows(page_records)
        images = {
            "memory": plots.memory_vs_budget(_memory_rows(page_verdicts, by_id, registry),
                                             plot_dir / f"{slug}-memory.png",
                                             "Memory of the configuration that decided each claim"),
            "speed": plots.speed_vs_roofline(speed_rows, plot_dir / f"{slug}-speed.png", _speed_title(speed_rows)),
            "latency": plots.latency_and_throughput(_latency_rows(page_records), plot_dir / f"{slug}-latency.png",
                                                    "Latency and throughput per model and backend (latest run)"),
            "scores": plots.scores_with_errors(_score_rows(page_records), plot_dir / f"{slug}-scores.png",
                                               "Eval scores"),
            "training": plots.loss_curves(_loss_rows(page_records), plot_dir / f"{slug}-training.png",
                                          "Fine-tune smoke tests: training loss per step"),
            "serve": plots.latency_vs_throughput(serve_curves(page_records), plot_dir / f"{slug}-serve.png",
                                                 "Serving: latency against throughput, per model and server"),
        }
        context = {
            "source": source, "slug": slug,
            "products": [_product(p, [v for v in page_verdicts if claims[v.claim_id].product == p], claims)
                         for p in source.products],
            "claims": claims, "claim_links": claim_links,
            "models": [registry.model(m) for m in subjects],
            "measured": [rows_by_id[r.id] for r in page_records],
            "columns": tables.columns_present([rows_by_id[r.id] for r in page_records]),
            "images": {k: f"plots/{v.name}" for k, v in images.items() if v},
            "provenance": [_provenance(r) for r in page_records],
        }
        for ext in ("html", "md"):
            path = out_dir / f"{slug}.{ext}"
            path.write_text(env.get_template(f"page.{ext}.j2").render(**context))
        pages.append(out_dir / f"{slug}.html")

    frame = records_frame(records) if records else None
    index = {
        "verdicts": verdicts, "page_links": page_links, "sources": registry.claim_sources,
        "leaderboard": _leaderboard(frame), "changes": [
            {"key": describe_key(c.key), "change": c} for c in changes],
        "regressions": sum(c.regression for c in changes), "record_count": len(records),
        "claim_links": claim_links, "exports": exports, **claim_pages.index_context(registry, verdicts),
    }
    for ext in ("html", "md"):
        (out_dir / f"index.{ext}").write_text(env.get_template(f"index.{ext}.j2").render(**index))
    return ReportSummary(out_dir, pages, len(records), index["regressions"])


def _leaderboard(frame) -> list[dict[str, Any]]:
    """One row per measured model, machine it ran on and target it was judged against: best decode speed,
    lowest peak memory, from ok runs. A CPU run is named as one, never by the card it stood in for."""
    if frame is None or frame.empty:
        return []
    ok = frame[frame["status"] == "ok"]
    columns = [c for c in ("decode_tokens_per_s", "throughput_tokens_per_s", "peak_memory_bytes",
                           "roofline_fraction") if c in ok.columns]
    if not columns:
        return []
    ran_on = [f"{name} (CPU)" if device == "cpu" else f"{name}, capped to {target}'s memory" if emulated is True
              else str(name) for name, device, emulated, target in zip(ok["device_name"], ok["device"], ok["emulated"],
                                                                          ok["target"])]
    ok = ok.assign(ran_on=ran_on, judged_against=ok["target"].fillna("-"))
    aggregations = {c: ("min" if c == "peak_memory_bytes" else "max") for c in columns}
    grouped = ok.groupby(["model", "kind", "ran_on", "judged_against"], dropna=False).agg(
        {**aggregations, "id": "count"})
    grouped = grouped.rename(columns={"id": "runs"}).reset_index()
    grouped = grouped.astype(object).where(grouped.notna(), None)
    return grouped.to_dict(orient="records")
