"""`bench finetune` for real on the CPU: LoRA SFT, DPO and a reward model on a tiny Llama,
and LoRA SFT on a tiny Mixtral (router frozen). Fixed seed, a learnable built-in task."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.results import iter_records
from tests.conftest import ROOT

pytest.importorskip("trl")
pytest.importorskip("peft")

CASES = [("tiny-llama", "lora-sft", 12), ("tiny-llama", "dpo", 12), ("tiny-llama", "reward", 12),
         ("tiny-mixtral", "lora-sft", 6)]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    results = tmp_path_factory.mktemp("finetune-results")
    out = {}
    for model, recipe, steps in CASES:
        proc = subprocess.run([sys.executable, "-m", "bench.cli", "finetune", model, "--recipe", recipe,
                               "--device", "cpu", "--steps", str(steps), "--learning-rate", "1e-3",
                               "--results-dir", str(results)],
                              capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), timeout=600)
        found = [r for r in iter_records(results) if r.model.id == model and r.config["recipe"]["id"] == recipe]
        out[(model, recipe)] = (proc, found[-1] if found else None)
    return out


@pytest.mark.parametrize("case", [c[:2] for c in CASES], ids=lambda c: f"{c[0]}-{c[1]}")
def test_recipe_trains_and_leaves_an_adapter_that_changes_the_model(records, case):
    proc, record = records[case]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert record.status == "ok" and record.kind == "finetune"
    m = {k: v.value for k, v in record.metrics.items()}
    assert m["loss_last"] < m["loss_first"], record.metrics["loss_last"].samples
    assert m["steps"] == record.config["steps"]
    assert m["adapter_reloaded"] is True and m["adapter_changes_output"] is True
    assert m["adapter_bytes"] > 0 and m["tokens_per_s"] > 0 and m["step_time_s"] > 0
    assert m["peak_memory_bytes"] > 100 * 2**20
    assert len(record.metrics["loss_last"].samples) == m["steps"]
    estimate = record.details["estimate"]
    assert estimate["training_memory_bytes"] > estimate["lower_bound_bytes"] > 0
    assert record.details["engine"]["router_trainable"] is False


def test_sft_formatting_masks_the_prompt_and_round_trips(records):
    formatting = records[("tiny-llama", "lora-sft")][1].details["engine"]["formatting"]
    assert formatting["prompt_masked"] is True and formatting["round_trip"] is True
    assert formatting["masked_tokens"] >= formatting["prompt_tokens"] > 0


def test_moe_recipe_says_what_it_targets(records):
    engine = records[("tiny-mixtral", "lora-sft")][1].details["engine"]
    assert engine["lora_targets"] == ["q_proj", "k_proj", "v_proj", "o_proj"]  # fused experts are parameters
    assert engine["moe_targets"] == ["attention", "shared_experts"]


def test_bad_dataset_file_is_one_line(run_bench, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": [], "completion": []}\n{oops\n')
    proc = run_bench("finetune", "tiny-llama", "--recipe", "lora-sft", "--device", "cpu", "--dataset", str(data),
                     "--results-dir", str(tmp_path))
    assert proc.returncode == 1  # the run fails in its child; its record says why
    (record,) = list(iter_records(tmp_path))
    assert record.status == "error" and "data.jsonl:2: not a JSON line" in record.error
