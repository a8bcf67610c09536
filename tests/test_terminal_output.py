"""What a person reads in the terminal: `bench results` for every record kind, one record in full, and
`bench verdicts` with its totals and filters, at the terminal's width and without raw numbers.

The records are small but complete, written by bench's own record constructor and store; the verdicts
are the repository's real registry decided against its real results/.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone

import pytest

from bench.config.registry import load_registry
from bench.records.schema import new_record
from bench.records.store import write_record
from tests.helpers.paths import ROOT

STARTED = datetime(2026, 11, 23, 22, 51, 13, 123456, tzinfo=timezone.utc)
CARD = {"device": "cpu", "cpu_model": "AMD EPYC", "target": None, "emulated": False}
VERDICT_WORDS = ("holds", "fails", "refuted-by-arithmetic", "plausible", "untested")
RAW = re.compile(r"None|\d[eE][+-]\d")  # a Python None or scientific notation (a record id's "shape-0b" is neither)


def _record(kind: str, model: str, metrics: dict, *, status: str = "ok", config: dict | None = None,
            details: dict | None = None, seconds_later: int = 0):
    return new_record(kind=kind, status=status, error="CUDA out of memory" if status == "oom" else None,
                      model={"id": model, "repo": None, "revision": None, "resolved_revision": None,
                             "weights": "synthetic"},
                      config=config or {}, hardware=CARD, software={"python": "3.11"}, metrics=metrics,
                      details=details or {}, started=STARTED.replace(second=seconds_later), duration_s=12.5)


def _level(label: str, concurrency: int, ttft_p90: float, output_tps: float) -> dict:
    """A serve level as `bench serve` records it in details.levels (its samples left out, as there)."""
    return {"level": label, "concurrency": concurrency, "rate": None, "duration_s": 4.0, "requests": 8,
            "completed": 8, "errors": 0, "errors_by_kind": {}, "ttft_p50_s": ttft_p90 / 2, "ttft_p90_s": ttft_p90,
            "ttft_p99_s": ttft_p90 * 1.1, "itl_p50_s": 0.012, "itl_p90_s": 0.02, "itl_p99_s": 0.03,
            "tpot_p50_s": 0.013, "tpot_p90_s": 0.021, "tpot_p99_s": 0.031, "e2e_p50_s": 0.9, "e2e_p90_s": 1.0,
            "e2e_p99_s": 1.1, "output_tokens_unknown": 0, "output_tokens_per_s": output_tps,
            "total_tokens_per_s": output_tps * 3, "requests_per_s": 2.0, "goodput_requests_per_s": 1.75}


def _metric(value, unit: str, samples=None) -> dict:
    return {"value": value, "unit": unit, "samples": samples}


def _records() -> dict[str, object]:
    levels = [_level("c1", 1, 0.0451, 2910.4), _level("c4", 4, 0.2003, 9123.45)]
    serve_metrics = {f"{name}@{level['level']}": _metric(level[name], unit) for level in levels
                     for name, unit in (("ttft_p90_s", "s"), ("output_tokens_per_s", "tokens/s"))}
    return {
        "inference": _record("inference", "tiny-llama", {
            "ttft_s": _metric(0.2271, "s", [0.2, 0.2271, 0.25]), "itl_p50_s": _metric(0.088, "s"),
            "decode_tokens_per_s": _metric(11.46, "tokens/s"), "peak_memory_bytes": _metric(3.7 * 2**30, "bytes")},
            details={"engine": {"engine": "llama.cpp"}}),
        "serve": _record("serve", "tiny-llama", serve_metrics, seconds_later=1,
                         details={"engine": {"engine": "vllm", "kind": "vllm"}, "levels": levels}),
        "eval": _record("eval", "tiny-llama", {
            "scores": _metric({"smoke_arith": {"acc": 0.75, "acc_stderr": 0.1},
                               "smoke_facts": {"acc": 0.5, "acc_stderr": None}}, "score"),
            "limit": _metric(10, "docs"), "num_fewshot": _metric(None, "shots")},
            seconds_later=2, details={"engine": {"engine": "lm-eval/transformers"}}),
        "lora": _record("finetune", "tiny-llama", {
            "loss_first": _metric(2.31, "loss"), "loss_last": _metric(1.02, "loss", [2.31, 1.5, 1.02]),
            "adapter_reloaded": _metric(True, "bool"), "adapter_changes_output": _metric(True, "bool")},
            config={"recipe": {"id": "lora-sft"}}, seconds_later=3),
        "dpo": _record("finetune", "tiny-llama", {
            "loss_first": _metric(0.6931, "loss"), "loss_last": _metric(0.6931, "loss"),
            "adapter_reloaded": _metric(True, "bool"), "adapter_changes_output": _metric(False, "bool"),
            "reward_margin": _metric(0.0412, "reward", [-0.01, 0.0412]),
            "reward_accuracy": _metric(0.625, "ratio", [0.375, 0.625])},
            config={"recipe": {"id": "dpo"}}, seconds_later=4),
        "oom": _record("finetune", "tiny-llama", {}, status="oom", config={"recipe": {"id": "full-sft"}},
                       seconds_later=5),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("terminal-output")
    records = _records()
    for record in records.values():
        write_record(record, folder)
    return folder, {name: record.id for name, record in records.items()}


def _cells(stdout: str, record_id: str) -> list[str]:
    """The cells of the table line that starts with `record_id` (columns are two spaces or more apart)."""
    (line,) = [line for line in stdout.splitlines() if line.startswith(record_id)]
    return re.split(r" {2,}", line.strip())


def test_results_lists_every_kind_with_its_figures(results, run_bench):
    folder, ids = results
    proc = run_bench("results", "--results-dir", str(folder), env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert [line.split()[0] for line in out.splitlines() if line.endswith("record") or " record " in line] == [
        "inference", "serve", "eval", "finetune"]
    assert _cells(out, ids["inference"])[1:] == ["ok", "llama.cpp", "AMD EPYC (CPU)", "-", "227 ms", "88.0 ms", "11.5", "3.70"]
    assert _cells(out, ids["serve"])[1:] == ["ok", "vllm", "AMD EPYC (CPU)", "-", "c1, c4", "9,123.5 tok/s at c4",
                                             "45.1 ms at c1", "0 of 16"]
    assert _cells(out, ids["eval"])[1:] == ["ok", "lm-eval/transformers", "AMD EPYC (CPU)", "-", "10 per task",
                                            "smoke_arith: acc 0.750 ± 0.100; smoke_facts: acc 0.500 (no standard "
                                            "error)"]
    assert _cells(out, ids["lora"])[1:] == ["ok", "lora-sft", "AMD EPYC (CPU)", "-", "✓", "✓ 2.310 → 1.020", "✓", "✓", "-",
                                            "-"]
    assert _cells(out, ids["dpo"])[1:] == ["ok", "dpo", "AMD EPYC (CPU)", "-", "✓", "✗ 0.6931 → 0.6931", "✓", "✗",
                                           "0.0412", "62.5%"]
    assert _cells(out, ids["oom"])[1:] == ["oom", "full-sft", "AMD EPYC (CPU)", "-", "✗", "-", "-", "-", "-", "-"]


def test_one_record_in_full(results, run_bench):
    """`--id`: when and how long, each figure with its spread; a serve record's levels; eval scores ± error."""
    folder, ids = results
    serve = run_bench("results", "--results-dir", str(folder), "--id", ids["serve"]).stdout
    assert "  started 2026-11-23 22:51 UTC, took 12.5 s" in serve
    assert "  levels c1, c4: best output 9,123.5 tok/s at c4; TTFT p90 45.1 ms at c1" in serve
    assert ["c4", "8", "0", "100.2", "220.3", "12.0", "13.0", "900.0", "9,123.45", "2.00", "1.75"] in [
        line.split() for line in serve.splitlines()]  # the levels table, one row per level
    dpo = run_bench("results", "--results-dir", str(folder), "--id", ids["dpo"]).stdout
    assert re.search(r"DPO reward margin, last step +0\.04120 +p10-p90 -0\.004880 to 0\.03608, n=2", dpo)
    assert re.search(r"DPO reward accuracy, last step +62\.5% +p10-p90 40\.0% to 60\.0%, n=2", dpo)
    evaluated = run_bench("results", "--results-dir", str(folder), "--id", ids["eval"]).stdout
    assert "  smoke_arith: acc 0.750 ± 0.100" in evaluated
    assert re.search(r"documents per task +10 docs", evaluated) and re.search(r"few-shot examples +the task's",
                                                                                evaluated)
    as_json = json.loads(run_bench("results", "--results-dir", str(folder), "--id", ids["lora"], "--json").stdout)
    assert as_json["id"] == ids["lora"] and as_json["metrics"]["loss_last"]["value"] == 1.02


def test_an_unknown_record_id_is_one_line_and_exit_2(results, run_bench):
    folder, ids = results
    proc = run_bench("results", "--results-dir", str(folder), "--id", ids["serve"][:-1])
    (line,) = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and line.startswith(f"error: unknown record {ids['serve'][:-1]!r}; did you mean: ")
    assert ids["serve"] in line


@pytest.mark.parametrize("columns", [80, 200])
def test_every_line_fits_the_terminal_and_no_raw_value_shows(results, run_bench, columns):
    folder, ids = results
    outputs = [run_bench("results", "--results-dir", str(folder), env={"COLUMNS": str(columns)}),
               run_bench("results", env={"COLUMNS": str(columns)}),
               run_bench("verdicts", env={"COLUMNS": str(columns)})]
    outputs += [run_bench("results", "--results-dir", str(folder), "--id", record_id, env={"COLUMNS": str(columns)})
                for record_id in ids.values()]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
        assert [line for line in proc.stdout.splitlines() if len(line) > columns] == []
        assert RAW.findall(proc.stdout) == []
    listing = outputs[0].stdout
    assert "0.750 ± 0.100" in listing  # a score and its error are never parted by a line break
    if columns == 80:  # too narrow for the table: each record a block, its id first, missing values left out
        assert f"{ids['oom']}\n    status: oom; recipe: full-sft; ran on: AMD EPYC (CPU); fits: ✗\n" in listing


def test_a_pipe_gets_a_fixed_width(run_bench):
    """Without COLUMNS and without a terminal, lines stay within 120 characters."""
    proc = run_bench("verdicts", env={"COLUMNS": ""})
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120 and max(len(line) for line in lines) > 100


@pytest.fixture(scope="module")
def all_verdicts():
    """Every verdict of the real registry and results/, as `--json` gives them (once for the module)."""
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "verdicts", "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    return json.loads(proc.stdout)


def test_verdicts_start_with_totals(all_verdicts, run_bench):
    counts = Counter(v["verdict"] for v in all_verdicts)
    first = run_bench("verdicts", env={"COLUMNS": "200"}).stdout.splitlines()[0]
    assert first == f"{len(all_verdicts)} claims: " + ", ".join(f"{counts[w]} {w}" for w in VERDICT_WORDS)


def test_verdict_filters_narrow_table_and_json(all_verdicts, run_bench):
    wanted = {"fails", "untested", "holds"}
    proc = run_bench("verdicts", "--verdict", "fails,untested", "--verdict", "holds", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert [v["claim_id"] for v in shown] == [v["claim_id"] for v in all_verdicts if v["verdict"] in wanted]
    model = all_verdicts[0]["subject"]
    text = run_bench("verdicts", "--model", model, "--verdict", "holds", env={"COLUMNS": "200"}).stdout
    expected = [v["claim_id"] for v in all_verdicts if v["subject"] == model and v["verdict"] == "holds"]
    assert text.splitlines()[0].startswith(f"{len(expected)} of {len(all_verdicts)} claims: {len(expected)} holds, 0 "
                                           "fails")
    assert [line.split()[0] for line in text.splitlines()[4:] if not line.startswith(" ")] == expected


def test_a_page_is_named_by_its_claims_file_or_its_seed(all_verdicts, run_bench):
    source, slug = next(iter(load_registry().claim_slugs.items()))
    by_slug = json.loads(run_bench("verdicts", "--page", slug, "--json").stdout)
    by_source = json.loads(run_bench("verdicts", "--page", source, "--json").stdout)
    assert by_slug == by_source and by_slug
    assert [v["claim_id"] for v in by_slug] == [v["claim_id"] for v in all_verdicts if v["source"] == source]


@pytest.mark.parametrize("args,expected", [
    (["--verdict", "hold"], f"error: unknown verdict 'hold'; choose {', '.join(VERDICT_WORDS)}"),
    (["--verdict", "holds,refuted"], f"error: unknown verdict 'refuted'; choose {', '.join(VERDICT_WORDS)}"),
    (["--model", "mistral-3bb"], "error: unknown model 'mistral-3bb'; did you mean"),
    (["--page", "no-such-page"], "error: unknown page 'no-such-page'"),
])
def test_bad_filters_are_one_line_and_exit_2(run_bench, args, expected):
    proc = run_bench("verdicts", *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(expected), proc.stderr
