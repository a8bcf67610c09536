"""A level's requests turned into the figures a serving benchmark reports (docs/metrics.md, "Serving").

Latencies are over the requests that completed; throughputs divide the tokens of completed
requests by the level's wall time (first request sent to last one ended); errors are
counted by kind. Goodput counts completed requests that met every SLO: TTFT at most
`ttft_s` and TPOT (the request's mean inter-token latency) at most `itl_s`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.records.stats import percentile
from bench.serve.load import LevelRun

QUANTILES = (50, 90, 99)
LATENCIES = ("ttft", "itl", "tpot", "e2e")


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 1.0
    itl_s: float = 0.1

    def met(self, ttft: float | None, tpot: float | None) -> bool:
        return ttft is not None and ttft <= self.ttft_s and (tpot is None or tpot <= self.itl_s)


def _samples(run: LevelRun) -> dict[str, list[float]]:
    ok = [r for r in run.requests if r.ok]
    return {"ttft": [r.ttft_s for r in ok if r.ttft_s is not None],
            "itl": [gap for r in ok for gap in r.itls_s],
            "tpot": [r.tpot_s for r in ok if r.tpot_s is not None],
            "e2e": [r.e2e_s for r in ok if r.e2e_s is not None]}


def summarize(run: LevelRun, slo: Slo) -> dict[str, Any]:
    """The level's figures (None where no sample exists) and its raw samples."""
    ok = [r for r in run.requests if r.ok]
    samples = _samples(run)
    out: dict[str, Any] = {"level": run.level.label, "concurrency": run.level.concurrency, "rate": run.level.rate,
                           "duration_s": run.duration_s, "requests": len(run.requests), "completed": len(ok),
                           "errors": len(run.requests) - len(ok),
                           "errors_by_kind": dict(Counter(r.error for r in run.requests if not r.ok))}
    for name in LATENCIES:
        for q in QUANTILES:
            out[f"{name}_p{q}_s"] = percentile(samples[name], q) if samples[name] else None
    output = [r.output_tokens for r in ok if r.output_tokens is not None]
    prompt = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    out["output_tokens_unknown"] = len(ok) - len(output)
    out["output_tokens_per_s"] = sum(output) / run.duration_s if output else None
    out["total_tokens_per_s"] = (sum(output) + sum(prompt)) / run.duration_s if output and prompt else None
    out["requests_per_s"] = len(ok) / run.duration_s
    out["goodput_requests_per_s"] = sum(slo.met(r.ttft_s, r.tpot_s) for r in ok) / run.duration_s
    out["samples"] = samples
    return out


# Record metric name -> unit, for the figures each level contributes to a record's metrics.
LEVEL_METRICS = {**{f"{n}_p{q}_s": "s" for n in LATENCIES for q in QUANTILES},
                 "output_tokens_per_s": "tokens/s", "total_tokens_per_s": "tokens/s", "requests_per_s": "requests/s",
                 "goodput_requests_per_s": "requests/s", "errors": "requests", "completed": "requests"}


def metric_name(name: str, level: str) -> str:
    """`ttft_p50_s@c4`: a level's figure as a flat record metric (so `compare` and tables see it)."""
    return f"{name}@{level}"
