"""`bench compare` tells a regression from noise: records written by bench's own constructor and writer
into two result folders, compared by the real command line; the rank test held to a brute-force count."""

from __future__ import annotations

import itertools
import json
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.records import stats
from bench.records.schema import new_record
from bench.records.store import write_record
from bench.report.regressions import Thresholds, compare_sets, history_changes

START = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)
N = 20  # samples a side: a realistic latency loop of a few seconds


def _spread(center: float, relative: float, seed: int) -> list[float]:
    """N samples of a timing-like distribution: log-normal around `center`, `relative` spread, seeded."""
    rng = random.Random(seed)
    return [center * rng.lognormvariate(0, relative) for _ in range(N)]


def _metric(samples: list[float], unit: str) -> dict:
    return {"value": stats.median(samples), "unit": unit, "samples": samples}


def _record(decode: list[float], itl: list[float], peak_bytes: float, night: int):
    """One tiny-llama CPU inference run as bench writes it: decode rates and ITLs with their raw samples, three
    batch throughput runs (bench's default), peak memory as its one reading."""
    throughput = [2 * rate for rate in decode[:3]]
    return new_record(
        kind="inference", status="ok", error=None,
        model={"id": "tiny-llama", "repo": None, "revision": None, "resolved_revision": None, "weights": "synthetic"},
        config={"scenario": {"backend": "transformers", "batch": 2, "prompt_len": 16, "output_len": 8,
                             "engine": {"quant": "bf16", "device": "cpu"}}},
        hardware={"device": "cpu", "cpu_model": "Test CPU", "target": None, "emulated": False},
        software={}, details={}, started=START + timedelta(days=night), duration_s=10.0,
        metrics={"decode_tokens_per_s": _metric(decode, "tokens/s"), "itl_p50_s": _metric(itl, "s"),
                 "throughput_tokens_per_s": _metric(throughput, "tokens/s"),
                 "peak_memory_bytes": {"value": peak_bytes, "unit": "bytes", "samples": None}})


def _night(folder: Path, record) -> Path:
    write_record(record, folder)
    return folder


def _baseline(seed: int = 1, night: int = 0):
    return _record(_spread(250.0, 0.08, seed), _spread(0.004, 0.08, seed + 100), 620e6, night)


@pytest.fixture
def baseline(tmp_path):
    return _night(tmp_path / "before", _baseline())


def _json(run_bench, *args: str) -> list[dict]:
    proc = run_bench("compare", *args, "--format", "json")
    return {row["metric"]: row for row in json.loads(proc.stdout)}, proc.returncode


def test_two_sets_from_one_distribution_show_no_regression(baseline, tmp_path, run_bench):
    again = _night(tmp_path / "after", _baseline(seed=7, night=1))
    proc = run_bench("compare", str(baseline), str(again))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows, code = _json(run_bench, str(baseline), str(again))
    assert code == 0
    for name in ("decode_tokens_per_s", "itl_p50_s"):
        row = rows[name]
        assert row["decision"] == "no significant change" and row["test"]["p_value"] > 0.01
        assert (row["n_before"], row["n_after"]) == (N, N) and abs(row["relative_change"]) < 0.10
    # Three throughput runs cannot reach p < 0.01 however far apart: said, never a regression.
    assert rows["throughput_tokens_per_s"]["decision"] == "not comparable"
    assert "not enough samples to separate from noise" in rows["throughput_tokens_per_s"]["reason"]
    assert rows["peak_memory_bytes"]["reason"].startswith("threshold alone")
    assert "regression" not in proc.stdout.split("\n")[-2]  # the summary line counts none


def test_a_candidate_30_percent_slower_is_a_regression(baseline, tmp_path, run_bench):
    fresh = _baseline(seed=7, night=1)
    slowed = _record([x * 0.7 for x in fresh.metrics["decode_tokens_per_s"].samples],
                     [x / 0.7 for x in fresh.metrics["itl_p50_s"].samples], 620e6, night=1)
    after = _night(tmp_path / "after", slowed)
    proc = run_bench("compare", str(baseline), str(after))
    assert proc.returncode == 1
    rows, code = _json(run_bench, str(baseline), str(after))
    assert code == 1
    decode = rows["decode_tokens_per_s"]
    assert decode["decision"] == "regression" and -0.36 < decode["relative_change"] < -0.24
    assert decode["test"]["name"] == "mann-whitney-u" and decode["test"]["p_value"] < 1e-4
    assert decode["reason"].startswith("beyond 10% and the noise: p<0.001, n=20/20")
    assert rows["itl_p50_s"]["decision"] == "regression"
    # The same slowdown (ITL +43%) under a 50% threshold: real, but not past the bar the user set.
    assert run_bench("compare", str(baseline), str(after), "--speed-drop", "0.5").returncode == 0


def test_a_big_point_change_inside_a_huge_spread_is_not_a_regression(tmp_path, run_bench):
    wide = [100.0 + 20 * k for k in range(N)]  # 100 .. 480 tok/s: a run shared with a noisy neighbour
    before = _night(tmp_path / "before", _record(wide, wide, 620e6, night=0))
    shifted = [x - 40 for x in wide]  # the median falls by 14%, the two sets overlap nine tenths
    after = _night(tmp_path / "after", _record(shifted, wide, 620e6, night=1))
    rows, code = _json(run_bench, str(before), str(after))
    assert code == 0
    decode = rows["decode_tokens_per_s"]
    assert decode["relative_change"] == pytest.approx(-40 / 290)
    assert decode["decision"] == "no significant change" and decode["test"]["p_value"] > 0.2
    assert decode["reason"].startswith("within the noise: p=")


def test_peak_memory_is_judged_by_its_threshold_alone_and_says_so():
    grown = _baseline(seed=1, night=1).model_copy(update={"id": "grown"})
    metrics = {**grown.metrics, "peak_memory_bytes": grown.metrics["peak_memory_bytes"].model_copy(
        update={"value": 620e6 * 1.08})}
    changes = {c.metric: c for c in compare_sets([_baseline()], [grown.model_copy(update={"metrics": metrics})],
                                                 Thresholds())}
    memory = changes["peak_memory_bytes"]
    assert memory.decision == "regression" and memory.test is None and memory.relative == pytest.approx(0.08)
    assert memory.reason == "threshold alone (one reading per run, no spread to test): beyond 5%"
    assert changes["decode_tokens_per_s"].decision == "no significant change"  # identical samples: p = 1


def test_json_has_the_fields_and_markdown_renders_a_table(baseline, tmp_path, run_bench):
    from markdown_it import MarkdownIt

    after = _night(tmp_path / "after", _baseline(seed=7, night=1))
    rows, _ = _json(run_bench, str(baseline), str(after))
    decode = rows["decode_tokens_per_s"]
    assert decode["configuration"] == "tiny-llama transformers bf16 Test CPU"
    assert {"before", "after", "before_median", "after_median", "n_before", "n_after", "relative_change",
            "threshold", "test", "decision", "reason", "before_id", "after_id"} <= decode.keys()
    assert decode["before_median"] == decode["before"] and decode["threshold"] == 0.10
    assert set(decode["test"]) == {"name", "u", "p_value", "method"} and decode["test"]["method"] == "exact"
    markdown = run_bench("compare", str(baseline), str(after), "--format", "markdown")
    assert markdown.returncode == 0
    html = MarkdownIt("commonmark").enable("table").render(markdown.stdout)
    assert html.count("<tr>") == 1 + 4 and "<th>decision</th>" in html
    assert "<td>tiny-llama transformers bf16 Test CPU</td>" in html and "tok/s</td>" in html


def test_the_table_shows_units_and_never_exponents(baseline, tmp_path, run_bench):
    after = _night(tmp_path / "after", _baseline(seed=7, night=1))
    proc = run_bench("compare", str(baseline), str(after), env={"COLUMNS": "100"})
    assert "e+" not in proc.stdout and re.search(r"\d\.\d+ GiB", proc.stdout) and re.search(r"\d ms\b", proc.stdout)
    assert proc.stdout.startswith("tiny-llama transformers bf16 Test CPU\n")
    assert max(len(line) for line in proc.stdout.splitlines()[:-1]) <= 100  # the summary line is prose


@pytest.mark.parametrize("args, words", [
    (("--speed-drop", "1.5"), "speed drop 1.5: must be a fraction above 0 and below 1"),
    (("--memory-growth", "-0.05"), "memory growth -0.05: must be a fraction above 0"),
    (("--alpha", "0"), "alpha 0.0: must be a fraction above 0 and below 0.5"),
    (("--alpha", "often"), "Invalid value for '--alpha'"),
    (("--format", "xml"), "unknown format 'xml'; choose table, markdown, json"),
])
def test_bad_settings_are_one_line_and_exit_2(baseline, run_bench, args, words):
    proc = run_bench("compare", str(baseline), str(baseline), *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr


def test_sets_with_no_configuration_in_common_exit_0(baseline, tmp_path, run_bench):
    other = _baseline(night=1).model_copy(update={"id": "other", "model": _baseline().model.model_copy(
        update={"id": "tiny-mixtral"})})
    after = _night(tmp_path / "after", other)
    proc = run_bench("compare", str(baseline), str(after))
    assert proc.returncode == 0 and proc.stdout.strip() == "no configuration was run in both sets"
    assert run_bench("compare", str(baseline), str(after), "--format", "json").stdout.strip() == "[]"


def test_the_report_decides_changes_by_the_same_rule():
    before, same, slowed = _baseline(night=0), _baseline(seed=7, night=1), _baseline(seed=7, night=2)
    slowed = slowed.model_copy(update={"metrics": {**slowed.metrics, "decode_tokens_per_s": slowed.metrics[
        "decode_tokens_per_s"].model_copy(update={"samples": [x * 0.7 for x in same.metrics[
            "decode_tokens_per_s"].samples], "value": same.metrics["decode_tokens_per_s"].value * 0.7})}})
    for later in (same, slowed):
        report = history_changes([before, later], Thresholds())
        compared = compare_sets([before], [later], Thresholds())
        assert [(c.metric, c.decision, c.reason) for c in report] == [(c.metric, c.decision, c.reason)
                                                                      for c in compared]
    assert {c.metric for c in history_changes([before, slowed], Thresholds()) if c.regression} == {
        "decode_tokens_per_s"}


def test_the_exact_rank_test_matches_counting_every_ordering():
    a, b = [0.31, 1.2, 2.5, 0.9, 5.1], [1.1, 2.0, 3.3, 0.1, 4.0, 6.2]
    values, n1 = a + b, len(a)
    ranks = stats._ranks(values)
    u_of = [sum(ranks[i] for i in chosen) - n1 * (n1 + 1) / 2
            for chosen in itertools.combinations(range(len(values)), n1)]
    test = stats.mann_whitney(a, b)
    brute = 2 * min(sum(u <= test.u for u in u_of), sum(u >= test.u for u in u_of)) / len(u_of)
    assert test.method == "exact" and test.p_value == pytest.approx(min(1.0, brute))
    assert stats.mann_whitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p_value == pytest.approx(2 / 252)
    assert stats.smallest_p_value(5, 5) == pytest.approx(2 / 252) and stats.smallest_p_value(3, 3) == 0.1


def test_the_normal_approximation_agrees_with_the_exact_test():
    x, y = _spread(1.0, 0.1, 3), [v * 1.06 for v in _spread(1.0, 0.1, 4)]
    exact, normal = stats.mann_whitney(x, y), stats.mann_whitney(x, y, method="normal")
    assert (exact.method, normal.method, exact.u) == ("exact", "normal", normal.u)
    assert 0.001 < exact.p_value < 0.5 and normal.p_value == pytest.approx(exact.p_value, rel=0.02)
    assert stats.mann_whitney(x, y[:-1] + [x[0]]).method == "normal"  # a tie: the exact count no longer applies
