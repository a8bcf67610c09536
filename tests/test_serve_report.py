"""Serve records in reports, `compare` and verdicts: the curve plot, regressions per level, the responsive claim.

The records come from real sweeps against the small loopback server of
tests/helpers/serve_fault_server.py (every request answered), written by bench's own record writer.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench.config.specs import ClaimSpec
from bench.records.schema import Metric
from bench.report import plots
from bench.report.regressions import Thresholds, compare_sets
from bench.report.serve import serve_curves
from bench.serve.load import Level
from bench.serve.measure import Endpoint, LoadSettings, run_levels, write_serve_record
from bench.verdicts.decide import verdict_for
from tests.helpers.serve_fault_server import launch


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Two sweeps of the same configuration (c1, c2), a minute apart, as "mistral-small-22b" on an rtx-4090."""
    folder = tmp_path_factory.mktemp("serve-report")
    base, process = launch("ok", folder)
    try:
        settings = LoadSettings(levels=[Level(concurrency=1), Level(concurrency=2)], prompt_len=8, output_len=4,
                                 min_duration_s=0.0, min_requests=6, warmup=1, timeout_s=5.0)
        endpoint = Endpoint(base, {}, "faulty", {"kind": "vllm", "version": "0.0-test"})
        start = datetime.now(timezone.utc)
        out = []
        for i in range(2):
            out.append(write_serve_record(
                endpoint=endpoint, settings=settings, outcome=run_levels(endpoint, settings), error=None,
                model_ref={"id": "mistral-small-22b", "repo": None, "revision": None, "resolved_revision": None,
                           "weights": "unknown"},
                hardware={"target": "rtx-4090", "emulated": False, "device_name": "test card"},
                results_dir=folder / "results", started=start + timedelta(minutes=i), duration_s=1.0,
                api_key_env="BENCH_TEST_NO_KEY"))
    finally:
        process.kill()
        process.wait()
    return out


def test_the_curve_has_one_point_per_level_and_is_plotted(records, tmp_path):
    (curve,) = serve_curves(records)  # the latest sweep of the configuration
    assert curve["record"] == records[1].id and [p["level"] for p in curve["points"]] == ["c1", "c2"]
    levels = records[1].details["levels"]
    assert [p["throughput"] for p in curve["points"]] == [level["output_tokens_per_s"] for level in levels]
    path = plots.latency_vs_throughput(serve_curves(records), tmp_path / "serve.png", "serving")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    assert plots.latency_vs_throughput([], tmp_path / "none.png", "serving") is None


def _worse(record, factor_tput: float, factor_latency: float):
    metrics = dict(record.metrics)
    for name, metric in record.metrics.items():
        figure = name.split("@")[0]
        if figure == "output_tokens_per_s":
            metrics[name] = Metric(value=metric.value * factor_tput, unit=metric.unit)
        if figure in ("ttft_p90_s", "ttft_p50_s"):  # the p50 carries the level's raw TTFTs, the p90's samples too
            samples = [x * factor_latency for x in metric.samples] if metric.samples else None
            metrics[name] = Metric(value=metric.value * factor_latency, unit=metric.unit, samples=samples)
    return record.model_copy(update={"metrics": metrics, "id": record.id + "-later",
                                     "started_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()})


def test_compare_flags_a_latency_rise_per_level_and_cannot_test_a_lone_throughput(records):
    changes = {c.metric: c for c in compare_sets([records[0]], [_worse(records[0], 0.5, 10.0)], Thresholds())}
    assert {m for m, c in changes.items() if c.regression} == {"ttft_p90_s@c1", "ttft_p90_s@c2"}
    assert changes["ttft_p90_s@c1"].n_after == len(records[0].metrics["ttft_p50_s@c1"].samples) >= 6
    # A level's throughput is one figure per sweep: halved, it still cannot be told from noise.
    assert changes["output_tokens_per_s@c1"].decision == "not comparable"
    assert not any(c.regression for c in compare_sets([records[0]], [_worse(records[0], 1.5, 0.5)], Thresholds()))


def _claim(ttft_s: float, rate: float) -> ClaimSpec:
    return ClaimSpec(id="responsive-test", speaker="test", quote="a responsive chat on a 24GB GPU",
                     subject="mistral-small-22b", product="test", kind="responsive",
                     conditions={"gpu": "rtx-4090"}, threshold={"ttft_s": ttft_s, "tokens_per_s_per_user": rate})


def test_a_responsive_claim_is_decided_by_the_one_user_level(registry, records):
    source = registry.claim_sources[0]
    held = verdict_for(registry, source, _claim(1.0, 5.3), records)
    assert held.verdict == "holds" and held.evidence["decisive_record"] == records[1].id
    assert "TTFT p90" in held.reason
    tight = verdict_for(registry, source, _claim(1e-6, 5.3), records)  # no server answers in a microsecond
    assert tight.verdict == "fails"
    # Without a serve record: the roofline at one user against the reading rate.
    assert verdict_for(registry, source, _claim(1.0, 5.3), []).verdict == "plausible"
    assert verdict_for(registry, source, _claim(1.0, 1e6), []).verdict == "refuted-by-arithmetic"
