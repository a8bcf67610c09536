"""The planner's llama.cpp memory against the published llama.cpp records (results/cpu/): the buffers
llama.cpp allocated at each run's context, within 2% of what `bench plan` says for the same file."""

from __future__ import annotations

import pytest

from bench.estimate.plan import PlanRequest, Subject, make_plan
from bench.records.store import iter_records
from bench.verdicts.evidence import is_llamacpp_on_cpu, llamacpp_held_bytes
from tests.helpers.paths import ROOT


def published_llamacpp_runs():
    return [r for r in iter_records(ROOT / "results" / "cpu") if is_llamacpp_on_cpu(r) and r.status == "ok"]


def test_there_are_published_runs_to_check():
    assert {r.model.id for r in published_llamacpp_runs()} >= {"mistral-3b", "mistral-3-small", "mistral-small-22b"}


@pytest.mark.parametrize("run", published_llamacpp_runs(), ids=lambda r: r.id)
def test_plan_matches_llamacpps_buffers(registry, run):
    engine = run.details["engine"]
    held = sum(llamacpp_held_bytes(run).values())
    plan = make_plan(PlanRequest(Subject.from_spec(registry.model(run.model.id)), quant=engine["weights_format"],
                                 context=engine["n_ctx"]))["memory"]
    assert plan["weights_bytes"] == pytest.approx(engine["model_buffer_bytes"], rel=0.005)
    assert plan["kv_cache_bytes"] == engine["kv_buffer_bytes"]
    assert plan["total_bytes"] - plan["overhead_bytes"] == pytest.approx(held, rel=0.02)


@pytest.mark.parametrize("claim_id,word,evidence_class", [
    ("mistral-3b-fits-4gb-kv", "holds", "measured on a CPU with llama.cpp"),
    ("mistral-3b-phone-ram", "holds", "measured on a CPU with llama.cpp"),
    ("mistral-3-small-edge-inference", "fails", "measured on a CPU with llama.cpp"),
    ("mistral-small-22b-fits-24gb", "holds", "llama.cpp buffers measured on a CPU plus the CUDA overhead"),
    ("mistral-small-22b-runs-llama-cpp", "holds", "llama.cpp loaded the synthetic GGUF"),
])
def test_a_fresh_checkouts_records_decide_the_on_device_and_local_runner_claims(registry, claim_id, word,
                                                                                 evidence_class):
    from bench.verdicts.decide import all_verdicts

    verdicts = {v.claim_id: v for v in all_verdicts(registry, published_llamacpp_runs())}
    assert verdicts[claim_id].verdict == word and verdicts[claim_id].reason.startswith(evidence_class)
