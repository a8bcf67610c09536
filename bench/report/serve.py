"""What the terminal, reports and `compare` show of serve records: the levels table, latency-throughput
curves and regression figures."""

from __future__ import annotations

from typing import Any

from bench.records.schema import RunRecord
from bench.report import terminal

# Per-level figures `compare` checks: throughputs regress when they drop, latencies when they grow.
THROUGHPUTS = ("output_tokens_per_s", "goodput_requests_per_s")
LATENCIES = ("ttft_p90_s", "tpot_p90_s")


def _server(record: RunRecord) -> str:
    engine = record.details.get("engine") or {}
    return f"{engine.get('kind') or 'server'} {engine.get('version') or ''}".strip()


def _curve_key(record: RunRecord) -> tuple:
    scenario = record.config.get("scenario", {})
    hw = record.hardware
    return (record.model.id, _server(record), hw.get("target") or hw.get("device_name") or hw.get("cpu_model"),
            scenario.get("api"), scenario.get("prompt_len"), scenario.get("output_len"))


def serve_curves(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One curve per model, server and card (the latest ok serve record): each level's output tokens/s against
    its TTFT and TPOT medians."""
    latest: dict[tuple, RunRecord] = {}
    for record in sorted((r for r in records if r.kind == "serve" and r.status == "ok"), key=lambda r: r.started_at):
        latest[_curve_key(record)] = record
    curves = []
    for key in sorted(latest, key=str):
        record = latest[key]
        model, server, card, api, prompt_len, output_len = key
        points = [{"level": level["level"], "throughput": level["output_tokens_per_s"],
                   "ttft": level.get("ttft_p50_s"), "tpot": level.get("tpot_p50_s")}
                  for level in record.details.get("levels", []) if level.get("output_tokens_per_s")]
        if points:
            curves.append({"label": f"{model} on {server} ({card}; {api} {prompt_len}->{output_len})",
                           "points": points, "record": record.id})
    return curves


def regression_metrics(record: RunRecord) -> dict[str, bool]:
    """The serve metrics of a record that `compare` checks -> True where higher is better."""
    if record.kind != "serve":
        return {}
    out = {}
    for name in record.metrics:
        figure = name.split("@", 1)[0]
        if figure in THROUGHPUTS or figure in LATENCIES:
            out[name] = figure in THROUGHPUTS
    return out


def levels_table(record: RunRecord) -> str:
    """A serve record's load levels as a terminal table: one row per level, latencies in ms."""
    def ms(value) -> str:
        return "-" if value is None else f"{value * 1000:,.1f}"

    def num(value) -> str:
        return "-" if value is None else f"{value:,.2f}"

    rows = [[level.get("level"), level.get("completed"), level.get("errors"), ms(level.get("ttft_p50_s")),
             ms(level.get("ttft_p99_s")), ms(level.get("itl_p50_s")), ms(level.get("tpot_p50_s")),
             ms(level.get("e2e_p50_s")), num(level.get("output_tokens_per_s")), num(level.get("requests_per_s")),
             num(level.get("goodput_requests_per_s"))]
            for level in record.details.get("levels", [])]  # a key a server's answer never gave shows "-"
    return terminal.table(["level", "ok", "errors", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "TPOT p50 ms",
                         "e2e p50 ms", "out tok/s", "req/s", "goodput req/s"], rows)
