"""How records look in the terminal: one record's summary, and the table of `bench results`."""

from __future__ import annotations

import json
from pathlib import Path

from bench import output

# The metrics a reader scans first, in order; the rest stay in the record.
KEY_METRICS = ("load_s", "ttft_s", "itl_p50_s", "itl_p99_s", "decode_tokens_per_s", "throughput_tokens_per_s",
               "peak_memory_bytes", "peak_allocated_bytes", "roofline_fraction", "loss_first", "loss_last",
               "tokens_per_s", "adapter_reloaded")


def format_value(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return output.gib(value)
    if isinstance(value, float):
        return f"{value:,.4g} {unit}"
    return f"{value} {unit}".strip()


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
    rows = [[name, format_value(record.metrics[name].value, record.metrics[name].unit)]
            for name in KEY_METRICS if name in record.metrics]
    if rows:
        lines += ["  " + line for line in output.table(["metric", "value"], rows).splitlines()]
    if "scores" in record.metrics:
        for task, values in record.metrics["scores"].value.items():
            shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items() if not k.endswith("_stderr"))
            lines.append(f"  {task}: {shown}")
    lines += [f"  note: {n}" for n in record.notes]
    return "\n".join(lines)


def results_table(directory: Path, json_out: bool) -> str:
    from bench.results import load_frame

    frame = load_frame(directory)
    if json_out:
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2)
    if frame.empty:
        return f"no records in {directory}"
    columns = ["id", "kind", "status", "model", "weights", "engine"] + [m for m in KEY_METRICS if m in frame.columns] + [
        c for c in ("device_name", "target", "started_at") if c in frame.columns]
    rows = frame[columns].astype(object).where(frame[columns].notna(), None).values.tolist()
    return output.table(columns, [[_short(v) for v in row] for row in rows])


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
