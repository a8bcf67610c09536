"""Arithmetic verdicts: the seed claims that arithmetic alone settles, and each rule on constructed claims."""

from __future__ import annotations

import json

import pytest

from bench.config.specs import ClaimSource, ClaimSpec
from bench.verdicts.decide import all_verdicts, verdict_for
from bench.verdicts.verdict import VERDICTS


@pytest.fixture(scope="module")
def verdicts(registry):
    return {v.claim_id: v for v in all_verdicts(registry)}


def check(registry, **claim):
    spec = ClaimSpec.model_validate({"speaker": "test", "quote": "q", "product": "p", **claim})
    return verdict_for(registry, ClaimSource(source="test.txt", title="t", products=["p"], claims=[spec]), spec)


def test_every_claim_gets_a_contract_word(verdicts):
    assert verdicts and all(v.verdict in VERDICTS for v in verdicts.values())


@pytest.mark.parametrize("claim_id,word", [
    ("scout-toolkit-qlora-24gb", "refuted-by-arithmetic"),  # ~109B params: far over 24 GiB at any width
    ("scout-toolkit-lora-24gb", "refuted-by-arithmetic"),
    ("mistral-small-22b-apache-blurb", "fails"),  # Mistral Research License
    ("mistral-medium-3-open-weights-hf", "fails"),
    ("mixtral-8x22b-active-39b", "holds"),
    ("mistral-3-small-params-24b", "holds"),
    ("llama-4-scout-permissive-license", "fails"),
    ("mistral-medium-3-params-72b", "untested"),  # undisclosed size; proxy shape only
    ("mistral-3b-beats-7b", "untested"),
])
def test_seed_claims(verdicts, claim_id, word):
    assert verdicts[claim_id].verdict == word, verdicts[claim_id].reason


def test_a_refutation_carries_its_numbers(verdicts):
    v = verdicts["scout-toolkit-qlora-24gb"]
    estimate = v.evidence["estimates"]["nf4"]
    assert estimate["lower_bound_bytes"] > estimate["budget_bytes"]
    assert v.conditions["recipe"] == "qlora-sft" and v.conditions["gpu"] == "rtx-4090"
    assert "GiB" in v.reason and v.would_change


def test_fits_only_under_an_unstated_condition(registry):
    v = check(registry, id="c", subject="mistral-3-small", kind="inference-memory", conditions={"gpu": "rtx-4090"})
    assert v.verdict == "plausible"
    assert v.conditions["quant"] == "nf4"
    assert any("fits only at nf4" in u for u in v.conditions["unstated"])
    assert any("4096 tokens (bench's default context" in u for u in v.conditions["unstated"])


def test_a_stated_quant_that_fits_has_no_quant_condition(registry):
    v = check(registry, id="c", subject="mistral-3-small", kind="inference-memory",
              conditions={"gpu": "rtx-4090", "quant": "nf4", "context": 8192})
    assert v.verdict == "plausible" and v.conditions["unstated"] == []


def test_lower_bound_fits_but_estimate_does_not_is_untested(registry):
    # Two 30k-token sequences at int4: weights + KV (22.4 GiB) fit a 24 GiB card, but with
    # activations, logits and the runtime the estimate (25.2 GiB) does not.
    v = check(registry, id="c", subject="mistral-3-small", kind="inference-memory",
              conditions={"gpu": "rtx-4090", "quant": "int4", "context": 30000, "batch": 2})
    est = v.evidence["estimates"]["int4"]
    assert est["lower_bound_bytes"] <= est["budget_bytes"] < est["total_bytes"]
    assert v.verdict == "untested" and "cannot decide" in v.reason


def test_params_outside_tolerance_is_refuted(registry):
    v = check(registry, id="c", subject="mistral-small-22b", kind="params", threshold={"total_params": 30e9})
    assert v.verdict == "refuted-by-arithmetic" and "22.25B" in v.reason


def test_speed_above_roofline_is_refuted(registry):
    fast = check(registry, id="c", subject="mistral-3-small", kind="speed",
                 conditions={"gpu": "rtx-4090", "quant": "int4"}, threshold={"decode_tokens_per_s": 500})
    slow = check(registry, id="c", subject="mistral-3-small", kind="speed",
                 conditions={"gpu": "rtx-4090", "quant": "int4"}, threshold={"decode_tokens_per_s": 20})
    assert fast.verdict == "refuted-by-arithmetic" and slow.verdict == "plausible"


def test_context_claim_is_decided_by_the_config(registry):
    assert check(registry, id="c", subject="mistral-small-22b", kind="context",
                 threshold={"context_tokens": 131072}).verdict == "fails"
    assert check(registry, id="c", subject="mixtral-8x22b", kind="context",
                 threshold={"context_tokens": 65536}).verdict == "holds"


def test_verdicts_json(run_bench):
    proc = run_bench("verdicts", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"claim_id", "verdict", "reason", "conditions", "evidence", "would_change"} <= set(rows[0])


def test_plan_claims_json_carries_claim_id_and_verdict(run_bench):
    rows = json.loads(run_bench("plan", "--claims", "--json").stdout)
    by_id = {r["claim_id"]: r for r in rows}
    scout = by_id["scout-toolkit-qlora-24gb"]
    assert scout["verdict"] == "refuted-by-arithmetic" and scout["fits"] is False
    assert scout["finetune"] == "qlora-sft" and scout["memory"]["budget_bytes"] > 0


def test_finetune_claim_without_a_stated_base_is_tried_on_a_4_bit_base(registry):
    v = check(registry, id="c", subject="mistral-small-22b", kind="finetune-memory",
              conditions={"gpu": "rtx-4090", "recipe": "dpo"})
    assert v.verdict == "plausible" and v.conditions["quant"] == "nf4"
    assert any("fits only on a 4-bit base (dpo+nf4)" in u for u in v.conditions["unstated"])
    assert set(v.evidence["estimates"]) == {"bf16", "nf4"}


def test_refutation_uses_the_packed_floor_not_todays_library(verdicts):
    # Scout on an 80 GB card: 4-bit weights could fit if experts were packed, so arithmetic
    # alone must not refute it, even though bitsandbytes today keeps its experts in 16 bits.
    v = verdicts["scout-toolkit-rlhf-single-a100"]
    assert v.verdict == "untested" and "bitsandbytes" in v.reason
    nf4 = v.evidence["estimates"]["nf4"]["breakdown"]
    assert nf4["weights_bytes"] > 3 * nf4["weights_floor_bytes"]


def registry_sources(model_id):
    import yaml

    from tests.helpers.paths import ROOT

    return yaml.safe_load((ROOT / "configs" / "models" / f"{model_id}.yaml").read_text())["sources"]


def test_every_registry_fact_verdict_names_its_source(verdicts):
    facts = [v for v in verdicts.values() if v.kind in ("license", "open-weights", "context")
             and "recorded" in v.evidence]
    assert facts and all(v.evidence["source"] for v in facts), [v.claim_id for v in facts if not v.evidence["source"]]



def test_a_context_claim_is_sourced_by_the_registrys_context_source(registry):
    v = check(registry, id="c", subject="llama-4-scout", kind="context", threshold={"context_tokens": 10_000_000})
    assert v.evidence["source"] == registry_sources("llama-4-scout")["max_position_embeddings"]
    v = check(registry, id="c", subject="mistral-3b", kind="open-weights", threshold={"open_weights": True})
    assert v.evidence["source"].startswith("https://huggingface.co/mistralai/Ministral-3-3B-Instruct-2512 ")
