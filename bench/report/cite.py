"""`bench cite`: a paste-ready citation of a claim's verdict or of one record.

A citation carries what a reader needs to judge and re-run the number: the quote and who
said it on which page, the verdict and its evidence class in words, the number it hinges
on with its unit, the conditions, the exact command that reproduces it, the bench version
and commit, and the record ids. One `Citation` is rendered as text, Markdown, a
BibTeX-like entry or JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import __version__
from bench.config.registry import Registry
from bench.errors import UserError, unknown_name_error
from bench.records.schema import RunRecord
from bench.records.store import iter_records
from bench.report.tables import ran_on, result_summary, score_lines
from bench.report.terminal import seconds
from bench.verdicts.decide import deciding_number
from bench.verdicts.evidence import record_class
from bench.verdicts.verdict import decisive_record

FORMATS = ("text", "markdown", "bibtex", "json")
CITED_METRICS = ("ttft_s", "itl_p50_s", "itl_p99_s", "decode_tokens_per_s", "throughput_tokens_per_s",
                 "peak_memory_bytes", "peak_allocated_bytes", "roofline_fraction", "loss_first", "loss_last",
                 "tokens_per_s", "adapter_reloaded")


@dataclass
class Citation:
    id: str
    title: str  # what is cited: the quote's claim or the record's run
    verdict: str
    evidence_class: str
    number: str  # the deciding number with its unit
    quote: str = ""
    meaning: str = ""  # the claim restated in measurable terms
    speaker: str = ""
    page: dict[str, Any] = field(default_factory=dict)  # title, address, published, seed
    quote_verdict: str = ""  # a quote of several parts: its weakest part's verdict
    parts: list[str] = field(default_factory=list)  # each part of such a quote, with its verdict and evidence
    reason: str = ""
    conditions: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # a record's measured figures
    reproduce: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    bench: str = ""  # version and commit
    would_change: str = ""


def _value(value: Any, unit: str) -> str:
    from bench.report.record_text import format_value

    return format_value(value, unit)


def record_command(record: RunRecord) -> str:
    """The `bench` command line that repeats a record's run (same model, engine, shape and card)."""
    cfg, hw, model = record.config, record.hardware, record.model
    parts = ["bench", record.kind, model.id]
    if record.kind == "trace":  # config and tokenizer only: no weights to name
        if "inference" in cfg:  # one generate
            shape = cfg["inference"]
            parts += ["--quant", str(shape.get("quant")), "--context", str(shape.get("context")), "--batch",
                      str(shape.get("batch")), "--output-len", str(shape.get("output_len"))]
        else:  # one training step
            recipe = cfg.get("recipe", {})
            parts += ["--finetune", str(recipe.get("id")), "--batch", str(recipe.get("micro_batch")), "--context",
                      str(recipe.get("sequence_length"))]
        parts += ["--device", str(cfg.get("device"))]
        return " ".join(parts + (["--gpu", hw["target"]] if hw.get("target") else []))
    if record.kind == "inference":
        s = cfg.get("scenario", {})
        parts[1] = "run"
        engine = s.get("engine", {})
        parts += ["--backend", s.get("backend", "vllm"), "--quant", engine.get("quant") or "bf16",
                  "--batch", str(s.get("batch")), "--prompt-len", str(s.get("prompt_len")),
                  "--output-len", str(s.get("output_len"))]
        if s.get("context"):
            parts += ["--context", str(s["context"])]
        if engine.get("max_model_len") and s.get("backend") in ("vllm", "llama.cpp"):
            parts += ["--max-model-len", str(engine["max_model_len"])]
    elif record.kind == "finetune":
        recipe = cfg.get("recipe", {})
        parts += ["--recipe", str(recipe.get("id")), "--steps", str(recipe.get("steps"))]
    elif record.kind == "eval":
        ev = cfg.get("eval", {})
        for task in ev.get("tasks") or []:
            parts += ["--tasks", task]
        if ev.get("limit"):
            parts += ["--limit", str(ev["limit"])]
    parts += ["--weights", model.weights, "--device", str(hw.get("device") or "cuda")]
    if hw.get("target"):
        parts += ["--gpu", hw["target"]]
    return " ".join(parts)


def _bench_of(records: list[RunRecord]) -> str:
    from bench.launch.environment import harness_commit

    commits = sorted({(r.software.get("bench_commit") or "unknown")[:12] for r in records})
    if commits:
        return f"bench {', '.join(sorted({r.software.get('bench') or __version__ for r in records}))}, " \
               f"commit {', '.join(commits)} (as recorded)"
    return f"bench {__version__}, commit {(harness_commit() or 'unknown')[:12]}"


def _claim_reproduce(registry: Registry, verdict, records: dict[str, RunRecord]) -> list[str]:
    """One command: the deciding record's run where a record decided, else the arithmetic or fact."""
    cond, subject = verdict.conditions, verdict.subject
    deciding = decisive_record(verdict, records)
    if deciding is not None:
        return [record_command(deciding)]
    if verdict.kind in ("license", "open-weights", "context"):
        return [f"bench models --json  (entry {subject})"]
    if verdict.kind == "params":
        return [f"bench plan {subject}"]
    if verdict.kind in ("inference-memory", "finetune-memory", "speed") and cond.get("gpu"):
        recipe = registry.recipe(cond["recipe"]) if cond.get("recipe") else None
        if recipe is not None and cond.get("quant") != recipe.quant:
            return [f"bench plan --claims --json  (entry {verdict.claim_id}: {recipe.id} on a 4-bit base)"]
        shape = f"--gpu {cond['gpu']} --context {cond.get('context')} --batch {cond.get('batch') or 1}"
        what = f"--finetune {recipe.id}" if recipe else f"--quant {cond.get('quant')}"
        return [f"bench plan {subject} {what} {shape}"]
    return [f"bench cite {verdict.claim_id}"]


def _conditions(conditions: dict[str, Any]) -> list[str]:
    out = []
    for key, value in conditions.items():
        if value in (None, [], ""):
            continue
        if key == "unstated":
            out += [f"not stated by the quote: {u}" for u in value]
        elif isinstance(value, list):
            out.append(f"{key}: {', '.join(str(v) for v in value)}")
        elif isinstance(value, bool):
            out.append(f"{key}: {'yes' if value else 'no'}")
        else:
            out.append(f"{key}: {value}")
    return out


def _part_text(part: dict[str, Any], ident: str) -> str:
    if part["claim_id"] is None:
        return f"{part['meaning']} ({part['verdict']}: no claim decides it)"
    tempered = f" ({part['qualifier']})" if part["qualifier"] else ""
    mine = " (this claim)" if part["claim_id"] == ident else ""
    return f"{part['meaning']}: {part['verdict']}{tempered}, {part['evidence_class']}{mine}"


def claim_citation(registry: Registry, ident: str, records: list[RunRecord]) -> Citation:
    from bench.verdicts.decide import all_verdicts

    by_id = {r.id: r for r in records}
    verdict = next(v for v in all_verdicts(registry, records) if v.claim_id == ident)
    claim = registry.claim(ident)
    source = next(s for s in registry.claim_sources if s.source == verdict.source)
    deciding = decisive_record(verdict, by_id)
    cited = ([deciding] if deciding else []) + [by_id[r] for r in verdict.evidence.get("records", [])
                                                 if r in by_id and by_id[r] is not deciding]
    page = {"title": source.title, "address": source.address, "published": source.published,
            "seed": source.source}
    parts = [_part_text(part, ident) for part in verdict.quote_parts]
    judged = verdict.conditions.get("gpu") or (deciding.hardware.get("target") if deciding else None)
    conditions = ([f"{_how(deciding)} on: {ran_on(deciding)}" + (f"; judged against {judged}" if judged else "")]
                  if deciding else []) + _conditions(verdict.conditions)
    return Citation(id=ident, title=f"{claim.product}: {claim.kind} claim", verdict=verdict.word,
                    evidence_class=verdict.evidence_class, number=deciding_number(verdict, by_id),
                    quote=claim.quote, meaning=verdict.meaning, speaker=claim.speaker, page=page,
                    quote_verdict=verdict.quote_verdict if parts else "", parts=parts, reason=verdict.reason,
                    conditions=conditions, reproduce=_claim_reproduce(registry, verdict, by_id),
                    records=[r.id for r in cited],
                    bench=_bench_of(cited), would_change=verdict.would_change)


def _how(record: RunRecord) -> str:
    """"traced" for a trace on fake tensors, which measured no device; "measured" for a run."""
    return "traced" if record.kind == "trace" else "measured"


def _level_lines(record: RunRecord) -> list[str]:
    """A serve record's levels, one line each: what a reader pastes beside the curve."""
    lines = []
    for level in record.details.get("levels", []):
        figures = [f"{level.get('completed', 0)} requests ok, {level.get('errors', 0)} errors"]
        figures += [f"{label} {seconds(level[key])}" for key, label in (("ttft_p50_s", "TTFT p50"),
                    ("ttft_p90_s", "TTFT p90"), ("tpot_p50_s", "TPOT p50"), ("tpot_p90_s", "TPOT p90"))
                    if level.get(key) is not None]
        if level.get("output_tokens_per_s") is not None:
            figures.append(f"{level['output_tokens_per_s']:,.1f} output tokens/s")
        lines.append(f"level {level.get('level')}: {', '.join(figures)}")
    return lines


def record_citation(record: RunRecord) -> Citation:
    figures = [f"{name}: {_value(record.metrics[name].value, record.metrics[name].unit)}"
               + (f" (n={len(record.metrics[name].samples)})" if record.metrics[name].samples else "")
               for name in CITED_METRICS if name in record.metrics]
    if "scores" in record.metrics:
        figures += score_lines(record.metrics["scores"].value)
    if record.kind in ("serve", "finetune"):
        figures = [result_summary(record)] + _level_lines(record) + figures
    hw, sw = record.hardware, record.software
    libs = ", ".join(f"{k} {sw[k]}" for k in ("vllm", "torch", "transformers", "peft", "trl", "lm_eval",
                                              "llama_cpp_python", "bitsandbytes") if sw.get(k))
    conditions = [f"{_how(record)} on: {ran_on(record)}" + (" (speed is the device's)" if hw.get("emulated") else "")
                  + (f"; judged against {hw['target']}" if hw.get("target") else ""),
                  f"model revision: {record.model.resolved_revision or record.model.revision or 'local'}",
                  f"{_how(record)} {record.started_at[:10]} with {libs}"]
    error = f"; {(record.error or '').strip().splitlines()[-1]}" if record.error else ""
    return Citation(id=record.id, title=f"{record.kind} of {record.model.id} ({record.model.weights} weights)",
                    verdict=f"status {record.status}{error}", evidence_class=record_class(record),
                    number=figures[0] if figures else "", conditions=conditions, figures=figures,
                    reproduce=[record_command(record)], records=[record.id], bench=_bench_of([record]))


def cite(registry: Registry, ident: str, results_dir: Path, fmt: str = "text") -> str:
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    records = list(iter_records(results_dir))
    record = next((r for r in records if r.id == ident), None)
    claim_ids = {c.id for _, c in registry.claims()}
    if record is not None:
        citation = record_citation(record)
    elif ident in claim_ids:
        citation = claim_citation(registry, ident, records)
    else:
        raise unknown_name_error("claim or record id", ident, claim_ids | {r.id for r in records},
                                 listing="`bench verdicts` (claims) or `bench results` (records)")
    return RENDERERS[fmt](citation)


def _page_text(c: Citation) -> str:
    """The page by its title, with its address and date where it published them."""
    page = c.page
    if not page:
        return ""
    found = [page.get("address"), page.get("published")]
    known = "; ".join(str(x) for x in found if x)
    return f"{page['title']} ({known or 'published without an address or a date'})"


def _record_role(c: Citation, index: int) -> str:
    """A claim's first record decided it; a record's citation names just the record."""
    if not c.quote:
        return "record"
    return "deciding record" if index == 0 else "other evidence"


def render_text(c: Citation) -> str:
    lines = []
    if c.quote:
        lines += [f"\"{c.quote}\"", f"  said by: {c.speaker}, on the page: {_page_text(c)}"]
    if c.quote_verdict:
        lines.append(f"the quote as a whole: {c.quote_verdict} (its weakest part)")
        lines += [f"  part: {part}" for part in c.parts]
    if c.meaning:
        lines.append(f"this claim: {c.meaning}")
    lines += [f"{c.title}", f"verdict: {c.verdict}" + (f" ({c.reason})" if c.reason else ""),
              f"evidence: {c.evidence_class}"]
    if c.number:
        lines.append(f"deciding number: {c.number}")
    lines += [f"figure: {f}" for f in c.figures[1:]]
    lines += [f"condition: {x}" for x in c.conditions]
    if c.would_change:
        lines.append(f"would change with: {c.would_change}")
    lines += [f"reproduce: {cmd}" for cmd in c.reproduce]
    lines += [f"{_record_role(c, i)}: {r}" for i, r in enumerate(c.records)]
    lines += [f"claim: {c.id}" if c.quote else "", c.bench]
    return "\n".join(line for line in lines if line)


def _md(text: str) -> str:
    from bench.report.sanitize import markdown_text

    return markdown_text(text)


def render_markdown(c: Citation) -> str:
    lines = []
    if c.quote:
        lines += [f"> \"{_md(c.quote)}\"", f"> — {_md(c.speaker)}, *{_md(_page_text(c))}*", ""]
    if c.quote_verdict:
        lines += [f"The quote as a whole: **{_md(c.quote_verdict)}** (its weakest part)."]
        lines += [f"- part: {_md(part)}" for part in c.parts] + [""]
    if c.meaning:
        lines += [f"This claim: {_md(c.meaning)}.", ""]
    lines += [f"**{_md(c.title)}: {_md(c.verdict)}.** {_md(c.reason)}".rstrip(),
              f"- evidence: {_md(c.evidence_class)}"]
    if c.number:
        lines.append(f"- deciding number: **{_md(c.number)}**")
    lines += [f"- {_md(f)}" for f in c.figures[1:]]
    lines += [f"- {_md(x)}" for x in c.conditions]
    if c.would_change:
        lines.append(f"- would change with: {_md(c.would_change)}")
    lines += [f"- reproduce: `{cmd}`" for cmd in c.reproduce]
    lines += [f"- {_record_role(c, i)}: `{r}`" for i, r in enumerate(c.records)]
    lines.append(f"- {'claim `' + c.id + '`; ' if c.quote else ''}{_md(c.bench)}")
    return "\n".join(lines)


def _bib(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")


def render_bibtex(c: Citation) -> str:
    fields = {"title": c.title, "quote": c.quote, "meaning": c.meaning, "speaker": c.speaker,
              "howpublished": _page_text(c), "url": c.page.get("address"), "date": c.page.get("published"),
              "verdict": c.verdict, "quoteverdict": c.quote_verdict, "parts": "; ".join(c.parts),
              "evidence": c.evidence_class, "number": c.number,
              "conditions": "; ".join(c.conditions), "reproduce": "; ".join(c.reproduce),
              "records": ", ".join(c.records), "note": c.bench}
    body = ",\n".join(f"  {k} = {{{_bib(v)}}}" for k, v in fields.items() if v)
    return f"@misc{{{c.id},\n{body}\n}}"


def render_json(c: Citation) -> str:
    return json.dumps(asdict(c), indent=2)


RENDERERS = {"text": render_text, "markdown": render_markdown, "bibtex": render_bibtex, "json": render_json}
