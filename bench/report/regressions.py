"""Change over time: runs of the same configuration compared, regressions flagged.

Two records are "the same configuration" when model, weights, kind, engine, quant,
target card, observed device and the scenario's shape (batch, prompt and output
lengths, recipe) agree. Speed metrics regress when they drop by more than
`speed_drop`; peak memory when it grows by more than `memory_growth` (configs/report.yaml).
A serve sweep (same server kind and API too) compares level by level: output tokens/s and
goodput regress when they drop by more than `speed_drop`, TTFT and TPOT p90 when they grow by more.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.config.registry import read_yaml
from bench.records.schema import RunRecord
from bench.report.serve import regression_metrics
from bench.verdicts.evidence import engine_quant

SPEED_METRICS = ("decode_tokens_per_s", "throughput_tokens_per_s", "tokens_per_s")
MEMORY_METRICS = ("peak_memory_bytes",)


@dataclass(frozen=True)
class Thresholds:
    speed_drop: float = 0.10
    memory_growth: float = 0.05

    @classmethod
    def from_config(cls, config_dir: Path) -> Thresholds:
        path = config_dir / "report.yaml"
        settings = (read_yaml(path) or {}).get("regression", {}) if path.exists() else {}
        return cls(**settings)


@dataclass(frozen=True)
class Change:
    key: str
    metric: str
    before: float
    after: float
    before_id: str
    after_id: str
    regression: bool

    @property
    def relative(self) -> float:
        return (self.after - self.before) / self.before if self.before else 0.0


def config_key(record: RunRecord) -> str:
    scenario = record.config.get("scenario", {})
    shape = {
        "kind": record.kind, "model": record.model.id, "weights": record.model.weights,
        "backend": scenario.get("backend") or (record.details.get("engine") or {}).get("engine"),
        "quant": engine_quant(record),
        "target": record.hardware.get("target"), "device": record.hardware.get("device_name")
        or record.hardware.get("cpu_model"), "batch": scenario.get("batch"), "prompt_len": scenario.get("prompt_len"),
        "output_len": scenario.get("output_len"), "recipe": record.config.get("recipe", {}).get("id"),
        "api": scenario.get("api"),
    }
    return json.dumps(shape, sort_keys=True)


def _changes(key: str, before: RunRecord, after: RunRecord, limits: Thresholds) -> list[Change]:
    changes = []
    # A serve sweep's per-level throughputs regress like speeds; its latencies when they grow past `speed_drop`.
    serve = regression_metrics(after)
    for name in SPEED_METRICS + MEMORY_METRICS + tuple(serve):
        a, b = before.metrics.get(name), after.metrics.get(name)
        if a is None or b is None or not isinstance(a.value, (int, float)) or not isinstance(b.value, (int, float)):
            continue
        if not a.value:
            continue
        relative = (b.value - a.value) / a.value
        if name in serve:
            worse = -relative > limits.speed_drop if serve[name] else relative > limits.speed_drop
        else:
            worse = -relative > limits.speed_drop if name in SPEED_METRICS else relative > limits.memory_growth
        changes.append(Change(key, name, a.value, b.value, before.id, after.id, worse))
    return changes


def history_changes(records: list[RunRecord], limits: Thresholds) -> list[Change]:
    """For each configuration run more than once: the latest run against the one before it."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.status == "ok":
            groups[config_key(record)].append(record)
    changes = []
    for key, runs in groups.items():
        if len(runs) > 1:
            runs.sort(key=lambda r: r.started_at)
            changes += _changes(key, runs[-2], runs[-1], limits)
    return changes


def compare_sets(baseline: list[RunRecord], candidate: list[RunRecord], limits: Thresholds) -> list[Change]:
    """The latest run of each configuration in `candidate` against the latest in `baseline`."""
    def latest(records: list[RunRecord]) -> dict[str, RunRecord]:
        out: dict[str, RunRecord] = {}
        for record in sorted((r for r in records if r.status == "ok"), key=lambda r: r.started_at):
            out[config_key(record)] = record
        return out

    before, after = latest(baseline), latest(candidate)
    return [c for key in sorted(before.keys() & after.keys()) for c in _changes(key, before[key], after[key], limits)]


def describe_key(key: str) -> str:
    shape = json.loads(key)
    return " ".join(f"{k}={v}" for k, v in shape.items() if v is not None)
