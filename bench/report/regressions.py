"""Change over time: runs of the same configuration compared, regressions told apart from noise.

Two records are "the same configuration" when model, weights, kind, engine, quant,
target card, observed device and the scenario's shape (batch, prompt and output
lengths, recipe) agree. Speeds (decode, throughput, training tokens/s) regress when they drop;
latencies (TTFT, ITL, a training step; a serve sweep's TTFT and TPOT p90 per level) when they grow;
peak memory when it grows.

A change is a regression (or an improvement) only when it passes BOTH bars: the figure moved by more
than its threshold (`speed_drop` for speeds and latencies, `memory_growth` for memory;
configs/report.yaml), AND the raw samples the records carry differ by a two-sided Mann-Whitney U test
at significance `alpha`. Two sweeps of the same code on one machine differ by more than 10% often
enough (a short run, a busy core) that the threshold alone cries wolf; a test alone flags a 1% shift
nobody cares about. A speed without samples enough to ever reach `alpha` is "not comparable". Peak
memory is one reading per run and barely noisy, so it is judged by its threshold alone, and says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.config.registry import read_yaml
from bench.errors import UserError
from bench.records.schema import RunRecord
from bench.records.stats import RankTest, mann_whitney, median, smallest_p_value
from bench.report.serve import regression_metrics
from bench.verdicts.evidence import engine_quant

SPEED_METRICS = ("decode_tokens_per_s", "throughput_tokens_per_s", "tokens_per_s")
LATENCY_METRICS = ("ttft_s", "itl_p50_s", "step_time_s")
MEMORY_METRICS = ("peak_memory_bytes",)

REGRESSION, IMPROVEMENT, STEADY, NOT_COMPARABLE = "regression", "improvement", "no significant change", "not comparable"
DECISIONS = (REGRESSION, IMPROVEMENT, STEADY, NOT_COMPARABLE)


@dataclass(frozen=True)
class Thresholds:
    """What counts as a change: relative thresholds and the significance level of the rank test.

    alpha 0.01 rather than 0.05: a nightly compare runs tens of tests (metrics x configurations x serve
    levels), so at 0.05 a night with no change at all would still turn up a significant one most nights;
    and a night with a regression never becomes the next baseline, so a false alarm costs more than one
    red run. Five samples a side are then the fewest that can show a change (2/C(10,5) = 0.008).
    """
    speed_drop: float = 0.10
    memory_growth: float = 0.05
    alpha: float = 0.01

    def __post_init__(self) -> None:
        for name, value, high in (("speed drop", self.speed_drop, 1.0), ("memory growth", self.memory_growth, 10.0),
                                  ("alpha", self.alpha, 0.5)):
            if not isinstance(value, (int, float)) or not 0 < value < high:
                raise UserError(f"{name} {value!r}: must be a fraction above 0 and below {high:g} (0.10 is 10%)")

    @classmethod
    def from_config(cls, config_dir: Path, **overrides: float | None) -> Thresholds:
        """The `regression:` settings of configs/report.yaml, each replaced by an override that is not None."""
        path = config_dir / "report.yaml"
        settings = (read_yaml(path) or {}).get("regression", {}) if path.exists() else {}
        known = {f.name for f in fields(cls)}
        if unknown := set(settings) - known:
            raise UserError(f"{path}: regression: unknown setting(s) {', '.join(sorted(unknown))}")
        return cls(**{**settings, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass(frozen=True)
class Change:
    """One metric of one configuration, before and after, with the decision and why."""
    key: str
    metric: str
    unit: str
    before: float
    after: float
    before_id: str
    after_id: str
    decision: str
    reason: str
    threshold: float
    n_before: int = 0
    n_after: int = 0
    before_median: float | None = None  # of the raw samples, where the records carry them
    after_median: float | None = None
    test: RankTest | None = None

    @property
    def relative(self) -> float:
        return (self.after - self.before) / self.before if self.before else 0.0

    @property
    def regression(self) -> bool:
        return self.decision == REGRESSION

    def to_json(self, label: str) -> dict[str, Any]:
        test = self.test and {"name": "mann-whitney-u", "u": self.test.u, "p_value": self.test.p_value,
                              "method": self.test.method}
        return {"configuration": label, "shape": json.loads(self.key), "metric": self.metric, "unit": self.unit,
                "before": self.before, "after": self.after, "before_median": self.before_median,
                "after_median": self.after_median, "n_before": self.n_before, "n_after": self.n_after,
                "relative_change": self.relative, "threshold": self.threshold, "test": test,
                "decision": self.decision, "reason": self.reason, "before_id": self.before_id,
                "after_id": self.after_id}


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


def _watched(record: RunRecord) -> dict[str, bool]:
    """The metrics compared for a record -> True where higher is better."""
    return {**{m: True for m in SPEED_METRICS}, **{m: False for m in LATENCY_METRICS + MEMORY_METRICS},
            **regression_metrics(record)}


def _samples(record: RunRecord, name: str) -> list[float]:
    """The raw samples behind a metric: its own, or for a serve level's p90 those its p50 carries (the same
    requests' latencies)."""
    metric = record.metrics.get(name)
    if metric is not None and metric.samples:
        return list(metric.samples)
    figure, _, level = name.partition("@")
    if level and figure.endswith("_p90_s"):
        sibling = record.metrics.get(f"{figure[: -len('_p90_s')]}_p50_s@{level}")
        return list(sibling.samples or []) if sibling is not None else []
    return []


def _percent(x: float) -> str:
    return f"{x:.0%}" if round(x * 100, 1) == round(x * 100) else f"{x:.1%}"


def p_text(p: float) -> str:
    """A p-value without exponent notation: three decimals, or "<0.001"."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _by_threshold(worse: float, threshold: float) -> tuple[str, str]:
    """Memory's rule: the threshold alone decides (`worse` > 0 is worse), and the reason says so."""
    past = abs(worse) > threshold
    decision = (REGRESSION if worse > 0 else IMPROVEMENT) if past else STEADY
    return decision, (f"threshold alone (one reading per run, no spread to test): "
                      f"{'beyond' if past else 'within'} {_percent(threshold)}")


def _by_threshold_and_test(worse: float, threshold: float, test: RankTest, alpha: float,
                           counts: str) -> tuple[str, str]:
    """A change counts only past the threshold AND significant; the reason names which bar held it back."""
    past, significant = abs(worse) > threshold, test.p_value < alpha
    stats = f"{p_text(test.p_value)}, {counts}"
    if past and significant:
        return (REGRESSION if worse > 0 else IMPROVEMENT), f"beyond {_percent(threshold)} and the noise: {stats}"
    if significant:
        return STEADY, f"within {_percent(threshold)} ({stats})"
    where = "the noise" if past else f"{_percent(threshold)} and the noise"
    return STEADY, f"within {where}: {stats}, alpha {alpha:g}"


def _change(key: str, name: str, higher_is_better: bool, before: RunRecord, after: RunRecord,
            limits: Thresholds) -> Change | None:
    a, b = before.metrics.get(name), after.metrics.get(name)
    numbers = (int, float)  # not bool, not a dict of scores
    if a is None or b is None or type(a.value) not in numbers or type(b.value) not in numbers or not a.value:
        return None
    relative = (b.value - a.value) / a.value
    worse = -relative if higher_is_better else relative
    threshold = limits.memory_growth if name in MEMORY_METRICS else limits.speed_drop
    xs, ys = _samples(before, name), _samples(after, name)
    common = {"key": key, "metric": name, "unit": b.unit, "before": a.value, "after": b.value,
              "before_id": before.id, "after_id": after.id, "threshold": threshold,
              "n_before": len(xs), "n_after": len(ys),
              "before_median": median(xs) if xs else None, "after_median": median(ys) if ys else None}
    if name in MEMORY_METRICS and not (xs and ys):
        decision, reason = _by_threshold(worse, threshold)
        return Change(**common, decision=decision, reason=reason)
    counts = f"n={len(xs)}/{len(ys)}"
    floor = smallest_p_value(len(xs), len(ys))
    if floor >= limits.alpha:
        why = "one reading per run, no spread" if not (xs and ys) else \
            f"{counts}: even no overlap gives {p_text(floor)}, alpha {limits.alpha:g}"
        return Change(**common, decision=NOT_COMPARABLE, reason=f"not enough samples to separate from noise ({why})")
    test = mann_whitney(xs, ys)
    decision, reason = _by_threshold_and_test(worse, threshold, test, limits.alpha, counts)
    return Change(**common, decision=decision, reason=reason, test=test)


def _changes(key: str, before: RunRecord, after: RunRecord, limits: Thresholds) -> list[Change]:
    changes = (_change(key, name, better, before, after, limits) for name, better in _watched(after).items())
    return [c for c in changes if c is not None]


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


def short_labels(keys: list[str]) -> dict[str, str]:
    """Each configuration as model, engine (or recipe), quant and card; where two share that, the fields
    in which they differ are added, so every label still names one configuration."""
    shapes = {k: json.loads(k) for k in keys}
    base = {k: " ".join(str(v) for v in (s.get("model"), s.get("recipe") or s.get("backend"), s.get("quant"),
                                         s.get("target") or s.get("device")) if v)
            for k, s in shapes.items()}
    labels = {}
    for key, shape in shapes.items():
        twins = [shapes[o] for o in keys if base[o] == base[key] and o != key]
        differing = sorted({f for t in twins for f in {*t, *shape} if t.get(f) != shape.get(f)})
        extra = " ".join(f"{f}={shape[f]}" for f in differing if shape.get(f) is not None)
        labels[key] = f"{base[key]} {extra}".strip()
    return labels
