"""How records look in the terminal: one record's summary, and the table of `bench results`.

A summary shows each key metric in its human unit with the spread of its samples
(p10-p90 and the sample count), so a reader sees how much a figure can be trusted
without opening the record; eval scores carry their standard errors.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import terminal
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
}


def format_value(value, unit: str) -> str:
    """A metric's value in its human unit: ms or s, tokens/s, GiB with two decimals, yes/no."""
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
    if unit in ("loss", "count", "params", "score"):
        return f"{value:,.4g}" if isinstance(value, float) else f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g} {unit}"
    return f"{value} {unit}".strip()


def _spread(record, name: str) -> str:
    metric = record.metrics.get(name)
    if metric is None or not metric.samples:
        return ""
    if metric.unit == "s":
        return terminal.spread(metric.samples)
    return terminal.spread(metric.samples, lambda v: f"{v:,.1f}")


def error_line(record) -> str:
    """The last line of a failure's text: the exception and its message."""
    return (record.error or record.status).strip().splitlines()[-1]


def render_record(record) -> str:
    hw = record.hardware
    where = hw.get("device_name") or hw.get("cpu_model") or "unknown device"
    if hw.get("emulated"):
        where += f" capped to {hw['target']}"
    lines = [f"{record.kind} {record.model.id} ({record.model.weights} weights) on {where}: {record.status}"]
    if record.error:
        lines.append(f"  error: {error_line(record)}")
    rows = [[label, format_value(record.metrics[name].value, record.metrics[name].unit), _spread(record, name)]
            for name, label in KEY_METRICS.items() if name in record.metrics]
    if rows:
        lines += ["  " + line for line in terminal.table(["metric", "value", "spread"], rows).splitlines()]
    if "scores" in record.metrics:
        lines += [f"  {line}" for line in score_lines(record.metrics["scores"].value)]
    lines += [f"  note: {n}" for n in record.notes]
    return "\n".join(lines)


def score_lines(scores: dict[str, dict[str, float]]) -> list[str]:
    """One line per task: each score with its standard error (± one standard error)."""
    lines = []
    for task, values in scores.items():
        shown = [f"{k} {v:.3f}" + (f" ± {values[k + '_stderr']:.3f}" if values.get(k + "_stderr") is not None
                                   else " (no standard error)")
                 for k, v in values.items() if not k.endswith("_stderr")]
        lines.append(f"{task}: {', '.join(shown)}")
    return lines


# `bench results` columns: the id and what was run, then the figures a reader compares across runs.
RESULTS_COLUMNS = {"ttft_s": "TTFT", "itl_p50_s": "ITL p50", "decode_tokens_per_s": "decode tok/s",
                   "peak_memory_bytes": "peak GiB",
                   "loss_last": "loss last"}


def results_table(directory: Path, json_out: bool) -> str:
    from bench.records.frame import load_frame

    frame = load_frame(directory)
    if json_out:
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2)
    if frame.empty:
        return f"no records in {directory}"
    card = frame["target"].fillna(frame["device_name"]) if "target" in frame.columns else frame.get("device_name")
    frame = frame.assign(card=card)
    metrics = [m for m in RESULTS_COLUMNS if m in frame.columns]
    columns = ["id", "status", "engine", "card"] + metrics
    headers = ["record", "status", "engine", "card"] + [RESULTS_COLUMNS[m] for m in metrics]
    rows = frame[columns].astype(object).where(frame[columns].notna(), None).values.tolist()
    return terminal.table(headers, [[_cell(c, v) for c, v in zip(columns, row)] for row in rows], keep=(0, 2))


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if column == "peak_memory_bytes":
        return gib_number(value, 2)
    if column.endswith("_s") and not column.endswith("per_s"):
        return terminal.seconds(value)
    if isinstance(value, float):
        return f"{value:,.1f}" if column.endswith("per_s") else f"{value:.4g}"
    return str(value)
