"""What reports and `compare` take from serve records: latency-throughput curves and regression figures."""

from __future__ import annotations

from typing import Any

from bench.results import RunRecord

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
    """One curve per model, server and card (the latest ok sweep): each level's output tokens/s against
    its TTFT and TPOT medians."""
    latest: dict[tuple, RunRecord] = {}
    for record in sorted((r for r in records if r.kind == "serve" and r.status == "ok"), key=lambda r: r.started_at):
        latest[_curve_key(record)] = record
    curves = []
    for key in sorted(latest, key=str):
        record = latest[key]
        model, server, card, api, prompt_len, output_len = key
        points = [{"level": level["level"], "throughput": level["output_tokens_per_s"],
                   "ttft": level["ttft_p50_s"], "tpot": level["tpot_p50_s"]}
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
