"""How records look in the terminal: one record's summary, and the tables of `bench results`.

A summary shows each key metric in its human unit with the spread of its samples
(p10-p90 and the sample count), so a reader sees how much a figure can be trusted
without opening the record; eval scores carry their standard errors. `bench results`
draws one table per record kind, each with the figures a reader compares across runs of
that kind: speed and memory, a serve sweep's best level, scores, a fine-tune's checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import unknown_name_error
from bench.records.schema import RunRecord
from bench.report import terminal
from bench.report.serve import levels_table
from bench.report.tables import ran_on, score_lines
from bench.units import gib, gib_number

# The metrics a reader scans first, in order, with the words they are shown under; the rest stay in the record.
KEY_METRICS = {
    "load_s": "load",
    "ttft_s": "TTFT (p50)",
    "itl_p50_s": "inter-token latency p50",
    "itl_p99_s": "inter-token latency p99",
    "decode_tokens_per_s": "decode at batch 1 (p50)",
    "throughput_tokens_per_s": "batch output throughput (p50)",
    "peak_memory_bytes": "peak memory",
    "peak_allocated_bytes": "peak allocated (torch)",
    "roofline_fraction": "share of the roofline",
    "loss_first": "loss, first step",
    "loss_last": "loss, last step",
    "step_time_s": "step time (p50)",
    "tokens_per_s": "training throughput",
    "adapter_reloaded": "adapter reloads",
    "adapter_changes_output": "adapter changes the output",
    "reward_margin": "DPO reward margin, last step",
    "reward_accuracy": "DPO reward accuracy, last step",
    "limit": "documents per task",
    "num_fewshot": "few-shot examples",
}
# Metrics whose absence means "the default", not "unknown": every document, the task's own shots.
DEFAULTS_WHEN_ABSENT = {"limit": "every document", "num_fewshot": "the task's"}


def format_value(value, unit: str) -> str:
    """A metric's value in its human unit: ms or s, tokens/s, GiB with two decimals, yes/no, never an exponent."""
    if value is None:
        return "-"
    if unit == "bytes":
        return gib(value, 2)
    if unit == "s":
        return terminal.seconds(value)
    if unit == "bool":
        return "yes" if value else "no"
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "tokens/s":
        return f"{value:,.1f} tokens/s"
    if unit in ("loss", "count", "params", "score", "reward"):
        return terminal.number(value, 4)
    return f"{terminal.number(value, 4)} {unit}".strip()


def _spread(record: RunRecord, name: str) -> str:
    metric = record.metrics.get(name)
    if metric is None or not metric.samples:
        return ""
    if metric.unit == "s":
        return terminal.spread(metric.samples)
    if metric.unit == "ratio":
        return terminal.spread(metric.samples, lambda v: f"{v:.1%}")
    if metric.unit == "tokens/s":
        return terminal.spread(metric.samples, terminal.rate)
    return terminal.spread(metric.samples, lambda v: terminal.number(v, 4))


def error_line(record) -> str:
    """The last line of a failure's text: the exception and its message."""
    return (record.error or record.status).strip().splitlines()[-1]


def render_record(record: RunRecord) -> str:
    """A record's summary: what ran where, its key figures with their spread, scores, levels, notes."""
    return "\n".join([_heading(record), *_body(record)])


def _heading(record: RunRecord) -> str:
    hw = record.hardware
    where = hw.get("device_name") or hw.get("cpu_model") or "unknown device"
    if hw.get("emulated"):
        where += f" capped to {hw['target']}"
    return f"{record.kind} {record.model.id} ({record.model.weights} weights) on {where}: {record.status}"


def _body(record: RunRecord) -> list[str]:
    lines = []
    if record.error:
        lines.append(terminal.fill(f"error: {error_line(record)}", "  "))
    rows = [[label, _key_value(record, name), _spread(record, name)]
            for name, label in KEY_METRICS.items() if name in record.metrics]
    if rows:
        table = terminal.table(["metric", "value", "spread"], rows, width=terminal.terminal_width() - 2)
        lines += ["  " + line for line in table.splitlines()]
    if record.kind == "serve" and record.details.get("levels"):
        levels = record.details["levels"]
        lines.append(terminal.fill(f"levels {', '.join(level['level'] for level in levels)}: best output "
                                   f"{_best_output(levels)}; TTFT p90 {_lightest_ttft(levels)}", "  "))
    if "scores" in record.metrics:
        lines += [terminal.fill(line, "  ") for line in score_lines(record.metrics["scores"].value)]
    lines += [terminal.fill(f"note: {n}", "  ") for n in record.notes]
    return lines


def _key_value(record: RunRecord, name: str) -> str:
    metric = record.metrics[name]
    if metric.value is None and name in DEFAULTS_WHEN_ABSENT:
        return DEFAULTS_WHEN_ABSENT[name]
    return format_value(metric.value, metric.unit)


def record_view(directory: Path, record_id: str, json_out: bool) -> str:
    """`bench results --id ID`: when the run started and how long it took, its summary, and a serve record's
    levels table; the record itself as JSON with `--json`."""
    from bench.records.store import iter_records

    records = {r.id: r for r in iter_records(directory)}
    if record_id not in records:
        raise unknown_name_error("record", record_id, records, listing="`bench results`")
    record = records[record_id]
    if json_out:
        return json.dumps(record.model_dump(), indent=2)
    when = f"  started {terminal.timestamp(record.started_at)}, took {terminal.seconds(record.duration_s)}"
    text = "\n".join([_heading(record), when, *_body(record)])
    if record.kind == "serve" and record.details.get("levels"):
        text += "\n\n" + levels_table(record)
    return text


def results_table(directory: Path, json_out: bool) -> str:
    """`bench results`: one table per record kind, oldest record first; the flat frame's rows with `--json`."""
    if json_out:
        from bench.records.frame import load_frame

        return json.dumps(json.loads(load_frame(directory).to_json(orient="records")), indent=2)
    from bench.records.store import iter_records

    records = sorted(iter_records(directory), key=lambda r: r.started_at)
    if not records:
        return f"no records in {directory}"
    tables = [KIND_TABLES[kind]([r for r in records if r.kind == kind]) for kind in KIND_TABLES
              if any(r.kind == kind for r in records)]
    return "\n\n".join(tables)


def _value(record: RunRecord, name: str) -> Any:
    metric = record.metrics.get(name)
    return None if metric is None else metric.value


def _engine(record: RunRecord) -> str | None:
    return (record.details.get("engine") or {}).get("engine")


def _target(record: RunRecord) -> str | None:
    return record.hardware.get("target")


def _inference_table(records: list[RunRecord]) -> str:
    rows = [[r.id, r.status, _engine(r), ran_on(r), _target(r), terminal.seconds(_value(r, "ttft_s")),
             terminal.seconds(_value(r, "itl_p50_s")), terminal.rate(_value(r, "decode_tokens_per_s")),
             _gib(_value(r, "peak_memory_bytes"))] for r in records]
    return terminal.table(["inference record", "status", "engine", "ran on", "judged against", "TTFT", "ITL p50", "decode tok/s",
                           "peak GiB"], rows, keep=(0, 2))


def _gib(n: float | None) -> str:
    return "-" if n is None else gib_number(n, 2)


def _best_output(levels: list[dict[str, Any]]) -> str:
    """`812.3 tok/s at c4`: the level with the highest output throughput."""
    measured = [level for level in levels if level.get("output_tokens_per_s") is not None]
    if not measured:
        return "-"
    best = max(measured, key=lambda level: level["output_tokens_per_s"])
    return f"{terminal.rate(best['output_tokens_per_s'])} tok/s at {best['level']}"


def _lightest_ttft(levels: list[dict[str, Any]]) -> str:
    """`45.0 ms at c1`: the TTFT p90 at the lightest concurrency level (a rate level when there is none)."""
    lightest = min(levels, key=lambda level: (level.get("concurrency") is None, level.get("concurrency") or 0))
    ttft = lightest.get("ttft_p90_s")
    return "-" if ttft is None else f"{terminal.seconds(ttft)} at {lightest['level']}"


def _serve_table(records: list[RunRecord]) -> str:
    rows = []
    for r in records:
        levels = r.details.get("levels") or []
        failed = (f"{sum(level.get('errors') or 0 for level in levels)} of "
                  f"{sum(level.get('requests') or 0 for level in levels)}")
        rows.append([r.id, r.status, _engine(r), ran_on(r), _target(r), ", ".join(str(level.get("level")) for level in levels) or None,
                     _best_output(levels) if levels else None, _lightest_ttft(levels) if levels else None,
                     failed if levels else None])
    return terminal.table(["serve record", "status", "server", "ran on", "judged against", "levels", "best output", "TTFT p90, lightest",
                           "failed requests"], rows)


def _eval_table(records: list[RunRecord]) -> str:
    rows = [[r.id, r.status, _engine(r), ran_on(r), _target(r), _documents(r),
             "; ".join(score_lines(_value(r, "scores") or {})) or None] for r in records]
    return terminal.table(["eval record", "status", "engine", "ran on", "judged against", "documents", "scores ± standard error"], rows)


def _documents(record: RunRecord) -> str:
    """Documents per task: a number when the run was limited (its scores are not citable), else "all"."""
    limit = _value(record, "limit")
    return "all" if limit is None else f"{limit:,} per task"


def _finetune_table(records: list[RunRecord]) -> str:
    """A fine-tune's checks: it fits (ran, no out-of-memory), the loss goes down, the adapter reloads and changes
    the model's output; a DPO run's reward margin and accuracy where any record has them."""
    dpo = any("reward_margin" in r.metrics for r in records)
    rows = []
    for r in records:
        row = [r.id, r.status, (r.config.get("recipe") or {}).get("id"), ran_on(r), _target(r), _fits(r), _loss_down(r),
               terminal.mark(_value(r, "adapter_reloaded")), terminal.mark(_value(r, "adapter_changes_output"))]
        if dpo:
            accuracy = _value(r, "reward_accuracy")
            row += [terminal.number(_value(r, "reward_margin")), "-" if accuracy is None else f"{accuracy:.1%}"]
        rows.append(row)
    headers = ["finetune record", "status", "recipe", "ran on", "judged against", "fits", "loss goes down", "adapter reloads",
               "changes the model"] + (["DPO reward margin", "DPO reward accuracy"] if dpo else [])
    return terminal.table(headers, rows)


def _fits(record: RunRecord) -> str:
    """✓ when the run finished, ✗ when it ran out of memory, "-" when it ended otherwise (it cannot tell)."""
    return terminal.mark(True if record.status == "ok" else False if record.status == "oom" else None)


def _loss_down(record: RunRecord) -> str:
    """`✓ 2.310 → 1.020`: whether the last step's loss is below the first's, with both."""
    first, last = _value(record, "loss_first"), _value(record, "loss_last")
    if first is None or last is None:
        return "-"
    return f"{terminal.mark(last < first)} {terminal.number(first, 4)} → {terminal.number(last, 4)}"


def _trace_table(records: list[RunRecord]) -> str:
    """A trace's tensor peak on fake tensors and what it is made of; not a measurement of a device."""
    parts = ("parameters", "gradients", "optimizer_state", "activations", "temporaries")
    rows = [[r.id, r.status, (r.config.get("recipe") or {}).get("id"), r.config.get("device"), _target(r),
             _gib(_value(r, "traced_peak_bytes")), *(_gib(_value(r, f"traced_{part}_bytes")) for part in parts)]
            for r in records]
    return terminal.table(["trace record", "status", "recipe", "fake device", "judged against", "traced peak GiB",
                           *(part.replace("_", " ") for part in parts)], rows, keep=(0,))


KIND_TABLES: dict[str, Callable[[list[RunRecord]], str]] = {
    "inference": _inference_table, "serve": _serve_table, "eval": _eval_table, "finetune": _finetune_table,
    "trace": _trace_table}
