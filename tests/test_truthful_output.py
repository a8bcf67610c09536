"""What the reader sees is what decided: every figure a report, plot or citation shows is held to the record
field or plan computation that decided it, under the same conditions, and named by where it was measured."""

from __future__ import annotations

import csv
import shutil
from datetime import datetime, timezone

import pytest

from bench.config.registry import load_registry
from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.records.schema import Metric, new_record
from bench.records.store import write_record
from bench.report.build import build_report
from bench.report.cite import cite
from bench.verdicts.decide import all_verdicts
from bench.verdicts.evidence import llamacpp_held_bytes
from tests.helpers.paths import ROOT

STARTED = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _serve_record():
    levels = [{"level": "c1", "completed": 8, "errors": 0, "ttft_p50_s": 0.21, "ttft_p90_s": 0.34, "tpot_p50_s": 0.05,
               "tpot_p90_s": 0.061, "output_tokens_per_s": 19.5},
              {"level": "c4", "completed": 16, "errors": 1, "ttft_p50_s": 0.4, "ttft_p90_s": 0.9, "tpot_p50_s": 0.08,
               "tpot_p90_s": 0.1, "output_tokens_per_s": 48.25}]
    return new_record(kind="serve", status="ok", error=None,
                      model={"id": "tiny-llama", "repo": None, "revision": None, "resolved_revision": None,
                             "weights": "synthetic"},
                      config={"scenario": {"backend": "llama.cpp", "api": "chat", "prompt_len": 64, "output_len": 16}},
                      hardware={"device": "cpu", "cpu_model": "AMD EPYC", "target": None, "emulated": False},
                      software={}, metrics={"output_tokens_per_s@c4": Metric(value=48.25, unit="tokens/s")},
                      details={"engine": {"engine": "llama.cpp", "kind": "llama.cpp"}, "levels": levels},
                      started=STARTED, duration_s=30.0)


def _finetune_record():
    return new_record(kind="finetune", status="ok", error=None,
                      model={"id": "tiny-llama", "repo": None, "revision": None, "resolved_revision": None,
                             "weights": "synthetic"},
                      config={"recipe": {"id": "dpo", "method": "dpo"}},
                      hardware={"device": "cpu", "cpu_model": "AMD EPYC", "target": None, "emulated": False},
                      software={}, metrics={"loss_first": Metric(value=0.693, unit="loss"),
                                            "loss_last": Metric(value=0.41, unit="loss", samples=[0.693, 0.55, 0.41]),
                                            "adapter_reloaded": Metric(value=True, unit="bool"),
                                            "adapter_changes_output": Metric(value=True, unit="bool"),
                                            "reward_margin": Metric(value=0.84, unit="reward")},
                      details={}, started=STARTED, duration_s=20.0)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """`bench report` over the committed CPU records plus one serve and one DPO record."""
    results = tmp_path_factory.mktemp("results")
    shutil.copytree(ROOT / "results", results, dirs_exist_ok=True)
    for record in (_serve_record(), _finetune_record()):
        write_record(record, results)
    out = tmp_path_factory.mktemp("site")
    registry = load_registry(ROOT / "configs")
    build_report(registry, results, out, ROOT / "configs")
    return registry, results, out


def _rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_the_memory_plot_draws_the_estimate_of_the_configuration_that_decided(report):
    registry, results, out = report
    rows = {r["claim"]: r for r in _rows(out / "plots" / "scout-checkpoints-vs-mistral-3b-memory.csv")}
    row = rows["mistral-3b-fits-4gb-kv"]
    assert (row["quant"], row["context"]) == ("q4_k_m", "4096")  # the llama.cpp run that decided it
    plan = make_plan(PlanRequest(Subject.from_spec(registry.model("mistral-3b")), registry.gpu("edge-4gb"), "q4_k_m",
                                 4096, 1))
    assert int(row["estimate"]) == plan["memory"]["total_bytes"]  # not the bf16 estimate (about 8 GiB)
    assert 2.9 * 2**30 < int(row["estimate"]) < 3.1 * 2**30
    decisive = next(r for r in results.rglob(f"{row['decisive_record']}.json"))
    from bench.records.store import read_record

    assert int(row["measured"]) == sum(llamacpp_held_bytes(read_record(decisive)).values())
    assert row["measured_as"] == "llama.cpp buffers"
    assert int(row["budget"]) == registry.gpu("edge-4gb").budget_bytes


def test_a_cpu_measurement_is_never_shown_under_a_card_name_alone(report):
    _, _, out = report
    measured = _rows(out / "measurements.csv")
    cpu = [r for r in measured if "EPYC" in r["ran on"]]
    assert cpu and all(r["ran on"].endswith("(CPU)") for r in cpu)
    assert {r["judged against"] for r in cpu} >= {"edge-4gb", "edge-8gb"}
    index = (out / "index.html").read_text()
    assert "<th>ran on</th><th>judged against</th>" in index
    assert "AMD EPYC" in index and "(CPU)</td><td>edge-8gb</td>" in index
    speed = _rows(out / "plots" / "scout-checkpoints-vs-mistral-3b-speed.csv")
    assert speed and all("(CPU)" in r["label"] for r in speed)


def test_a_quote_of_several_claims_is_held_to_its_weakest_part(report):
    registry, results, out = report
    from bench.records.store import iter_records

    verdicts = {v.claim_id: v for v in all_verdicts(registry, list(iter_records(results)))}
    fits = verdicts["mistral-small-22b-fits-24gb"]
    assert fits.verdict == "holds"  # the memory part, decided by llama.cpp's buffers plus the CUDA overhead
    assert fits.quote_verdict == "untested"  # "in under five minutes" is decided by no claim
    assert [p["verdict"] for p in fits.quote_parts] == ["holds", "plausible", "untested"]
    assert verdicts["mistral-small-22b-responsive-24gb"].quote_verdict == "untested"
    assert verdicts["llama-4-scout-locally-runnable"].quote_verdict == "refuted-by-arithmetic"
    page = (out / "claims" / "mistral-small-22b-fits-24gb.html").read_text()
    assert "the quote as a whole" in page and "under five minutes" in page


def test_a_margin_inside_the_measurements_uncertainty_is_said(report):
    registry, results, _ = report
    from bench.records.store import iter_records

    phone = next(v for v in all_verdicts(registry, list(iter_records(results))) if v.claim_id == "mistral-3b-phone-ram")
    assert phone.verdict == "holds" and phone.qualifier.startswith("narrow margin: 0.09 GiB to spare, 1.5%")
    assert phone.word.startswith("holds (narrow margin")


def test_a_claim_citation_leads_with_the_record_that_decided_it(report):
    registry, results, _ = report
    text = cite(registry, "mistral-3b-fits-4gb-kv", results)
    lines = text.splitlines()
    assert lines[0] == '"3B at reasonable quant levels clears that bar"'
    assert "address unknown" not in text and "seed " not in text
    assert "this claim: mistral-3b fits in 4 GB with room for a KV cache, at some quant" in lines
    reproduce = [line for line in lines if line.startswith("reproduce: ")]
    assert len(reproduce) == 1 and "--max-model-len 4096" in reproduce[0] and "--gpu edge-4gb" in reproduce[0]
    records = [line for line in lines if line.endswith(("22ee9f", "ab3c3e"))]
    assert records[0] == "deciding record: 20261123T225113Z-inference-mistral-3b-22ee9f"
    assert "condition: measured on: AMD EPYC (CPU); judged against edge-4gb" in lines


def test_serve_eval_and_finetune_records_reach_report_and_cite(report):
    registry, results, out = report
    rows = {r["kind"]: r for r in _rows(out / "measurements.csv")}
    assert rows["serve"]["result"] == "best 48.2 output tok/s at c4; one user: TTFT p90 340 ms, TPOT p90 61.0 ms"
    assert rows["finetune"]["result"] == ("✓ fits, ✓ loss goes down (0.693 to 0.410), ✓ adapter reloads, "
                                          "✓ changes the model; reward margin 0.840")
    serve_id = next(p.stem for p in results.glob("*-serve-*.json"))
    text = cite(registry, serve_id, results)
    assert "deciding number: best 48.2 output tok/s at c4" in text
    assert "level c4: 16 requests ok, 1 errors, TTFT p50 400 ms" in text
    assert (out / "plots" / "scout-checkpoints-vs-mistral-3b-training.csv").exists() is False  # tiny-llama: no page
    assert all((out / "plots" / f"{png.stem}.csv").exists() for png in (out / "plots").glob("*.png"))


def test_an_unknown_id_gets_a_suggestion_never_a_dump(run_bench):
    near = run_bench("cite", "mistral-3b-fits-4gb")
    assert near.returncode == 2 and "did you mean: mistral-3b-fits-4gb-kv" in near.stderr
    far = run_bench("cite", "foo")
    assert far.returncode == 2 and len(far.stderr.strip().splitlines()) == 1
    assert "list them with `bench verdicts`" in far.stderr and far.stderr.count(",") < 5
