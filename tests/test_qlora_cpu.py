"""QLoRA for real on the CPU (bitsandbytes' CPU backend): `bench finetune --recipe qlora-sft` on the
tiny Llama's checkpoint and on a random 4-bit base made from the config alone, each run as trl's
users run it, and the training estimate against what the trainer held."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.records.store import iter_records
from tests.helpers.hub import hub_model_registry

pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

STEPS = "8"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(model, weights) -> the record of a qlora-sft run; tiny-hub's base is random 4-bit."""
    import os
    import subprocess
    import sys

    from tests.helpers.paths import ROOT

    tmp = tmp_path_factory.mktemp("qlora")
    env = {**os.environ, **hub_model_registry(tmp)}
    out = {}
    for model, weights in (("tiny-llama", "real"), ("tiny-hub", "synthetic")):
        results = tmp / f"results-{model}"
        args = ["finetune", model, "--recipe", "qlora-sft", "--device", "cpu", "--steps", STEPS,
                "--learning-rate", "1e-3", "--results-dir", str(results)]
        if weights == "synthetic":
            args += ["--weights", "synthetic"]
        proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=ROOT,
                              env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        (record,) = list(iter_records(results))
        out[model] = record
    return out


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-hub"])
def test_qlora_trains_and_leaves_an_adapter_that_changes_the_model(runs, model):
    record = runs[model]
    m = {k: v.value for k, v in record.metrics.items()}
    assert record.status == "ok" and record.model.weights == "synthetic"
    checkpoint = list(Path(record.model.path).expanduser().glob("*.safetensors"))
    assert checkpoint if model == "tiny-llama" else not checkpoint  # tiny-hub's base exists only in memory
    assert m["steps"] == int(STEPS) and m["loss_last"] < m["loss_first"], record.metrics["loss_last"].samples
    assert m["adapter_reloaded"] is True and m["adapter_changes_output"] is True and m["adapter_bytes"] > 0
    assert record.software["bitsandbytes"]


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-hub"])
def test_trainer_holds_a_4bit_base_in_bf16_and_bf16_adapters(runs, model):
    """As trl leaves a QLoRA model: nothing cast to fp32 (peft's prepare_model_for_kbit_training is
    not called), adapters cast down to bf16 by the trainer."""
    census = runs[model].details["engine"]["state_census"]
    assert set(census["frozen_4bit"]) == {"uint8", "float32"}  # packed codes; absmax scales and tables
    assert set(census["frozen"]) == {"bfloat16"}
    assert set(census["trainable"]) == {"bfloat16"}


def test_estimate_is_what_the_trainer_held(runs, registry):
    """The estimator's frozen weights and trainable weights against the census of the run."""
    from bench.estimate.params import count_params
    from bench.estimate.training import training_memory

    record = runs["tiny-llama"]
    census = record.details["engine"]["state_census"]
    cfg = registry.model("tiny-llama").architecture
    estimate = training_memory(cfg, count_params(cfg), registry.recipe("qlora-sft"), 0, None)
    frozen = sum(census["frozen_4bit"].values()) + sum(census["frozen"].values())
    assert frozen == pytest.approx(estimate.weights_bytes, rel=0.01)
    assert estimate.trainable_params == record.metrics["trainable_params"].value
    assert census["trainable"]["bfloat16"] == estimate.trainable_params * estimate.trainable_dtype_bytes
    # weights and gradients in bf16 in the allocator; paged 8-bit AdamW's two 8-bit moments outside it
    assert estimate.trainable_bytes == estimate.trainable_params * (2 + 2)
    assert estimate.outside_allocator_bytes == int(estimate.trainable_params * 2 * (1 + 4 / 256))


def test_a_random_base_is_for_4bit_recipes_only(run_bench, tmp_path):
    proc = run_bench("finetune", "tiny-hub", "--recipe", "lora-sft", "--weights", "synthetic", "--device", "cpu",
                     "--results-dir", str(tmp_path), env=hub_model_registry(tmp_path))
    assert proc.returncode == 2 and "random 4-bit base for QLoRA recipes" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
