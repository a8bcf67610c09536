"""`bench finetune` for real on the CPU: LoRA SFT, DPO, a reward model and a full fine-tune on a tiny
Llama, and LoRA SFT on a tiny Mixtral (router frozen) and a tiny Llama 4 (its decoder found by trl).
Fixed seed, a learnable built-in task. Recipe settings the trainer cannot run are refused before any
model loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.estimate.params import count_params
from bench.records.store import iter_records
from tests.helpers.paths import ROOT

pytest.importorskip("trl")
pytest.importorskip("peft")

CASES = [("tiny-llama", "lora-sft", 12), ("tiny-llama", "dpo", 12), ("tiny-llama", "reward", 12),
         ("tiny-mixtral", "lora-sft", 6), ("tiny-llama4", "lora-sft", 6)]


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
    assert proc.returncode == 2  # bad input, found before the run: no model loaded, no record
    assert proc.stderr.strip().endswith("data.jsonl:2: not a JSON line (Expecting property name enclosed in double "
                                        "quotes)") and len(proc.stderr.strip().splitlines()) == 1
    assert list(iter_records(tmp_path)) == []


def test_full_finetune_trains_every_weight_and_reloads(tmp_path, registry):
    command = [sys.executable, "-m", "bench.cli", "finetune", "tiny-llama", "--recipe", "full-sft", "--device", "cpu",
               "--steps", "6", "--learning-rate", "1e-3", "--results-dir", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (record,) = list(iter_records(tmp_path))
    m = {k: v.value for k, v in record.metrics.items()}
    assert record.status == "ok" and m["loss_last"] < m["loss_first"]
    assert m["trainable_params"] == count_params(registry.model("tiny-llama").architecture).total
    assert record.details["engine"]["lora_targets"] == []
    assert m["adapter_reloaded"] is True and m["adapter_changes_output"] is True  # the saved model, reloaded
    census = record.details["engine"]["state_census"]
    assert set(census["trainable"]) == {"float32"}  # full_precision mixed: fp32 master weights


@pytest.mark.parametrize("overrides, words", [
    ({"loss": "hf"}, "fused LM head"),
    ({"loss": "chunked"}, "fused LM head"),
    ({"optimizer_in_backward": True, "gradient_accumulation": 1}, "steps after the backward"),
    ({"activation_offload": True}, "checkpointed inputs"),
    ({"packing": True, "method": "dpo"}, "packing applies to SFT"),
    ({"quant": "int8"}, "bf16 or nf4 base"),
])
def test_recipe_settings_the_trainer_cannot_run_are_refused(registry, overrides, words):
    from bench.scenarios.finetune_settings import unsupported_setting

    recipe = registry.recipe("lora-sft").model_copy(update=overrides).model_dump()
    assert words in unsupported_setting(recipe)
    assert unsupported_setting(registry.recipe("lora-sft").model_dump()) is None


def test_a_refused_recipe_setting_is_one_line_before_any_run(registry, tmp_path, monkeypatch):
    from bench.errors import UserError
    from bench.jobs.finetune import run_finetune

    offloaded = registry.recipe("lora-sft").model_copy(update={"activation_offload": True})
    monkeypatch.setattr(type(registry), "recipe", lambda self, name: offloaded)
    with pytest.raises(UserError, match="recipe lora-sft: activation_offload"):
        run_finetune(registry, "tiny-llama", recipe_name="lora-sft", gpu=None, steps=1, learning_rate=None,
                     weights=None, dataset=None, device="cpu", results_dir=tmp_path, timeout_s=60)
    assert not list(tmp_path.iterdir())


def test_a_recipe_that_adapts_nothing_in_the_model_is_refused(registry, tmp_path, monkeypatch):
    from bench.errors import UserError
    from bench.jobs.finetune import run_finetune

    shared_only = registry.recipe("lora-sft").model_copy(update={"moe_targets": ["shared_experts"]})
    monkeypatch.setattr(type(registry), "recipe", lambda self, name: shared_only)
    with pytest.raises(UserError, match="adapts no module of tiny-mixtral"):  # no shared expert, no attention
        run_finetune(registry, "tiny-mixtral", recipe_name="lora-sft", gpu=None, steps=1, learning_rate=None,
                     weights=None, dataset=None, device="cpu", results_dir=tmp_path, timeout_s=60)
