"""`bench finetune`: a recipe on a model, isolated, with the estimator's prediction beside the measurement."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.config.registry import Registry
from bench.errors import UserError
from bench.estimate.params import count_params
from bench.estimate.training import lora_params, training_memory
from bench.jobs.runner import check_device, execute, installed_engines, prepare_weights, resolve_model
from bench.scenarios.finetune_data import check_rows, load_rows
from bench.scenarios.finetune_settings import FinetuneSettings, unsupported_setting


def run_finetune(registry: Registry, model_name: str, *, recipe_name: str, gpu: str | None, steps: int | None,
                 learning_rate: float | None, weights: str | None, dataset: str | None, device: str,
                 results_dir: Path, timeout_s: float, labels: dict[str, str] | None = None):
    model = resolve_model(registry, model_name)
    recipe = registry.recipe(recipe_name)
    if learning_rate is not None:
        recipe = recipe.model_copy(update={"learning_rate": learning_rate})
    target = registry.gpu(gpu) if gpu else None
    unsupported = unsupported_setting(recipe.model_dump())
    if unsupported:
        raise UserError(f"recipe {recipe.id}: {unsupported}")
    if recipe.quant == "nf4" and "bitsandbytes" not in installed_engines():
        raise UserError(f"recipe {recipe.id} quantises the base with bitsandbytes NF4, which is not installed here")
    cap = check_device(device, target, model.id)
    random_base = weights == "synthetic" and model.spec is not None and not model.spec.synthetic
    if random_base and recipe.quant != "nf4":
        raise UserError(f"--weights synthetic makes a random 4-bit base for QLoRA recipes; {recipe.id} trains a "
                        f"{recipe.quant} base, which needs the checkpoint (use `bench plan --finetune` for the "
                        "arithmetic)")
    dataset = dataset or recipe.dataset
    if not _is_hub_dataset(dataset):  # a bad local file is bad input (exit 2), found before any model loads
        check_rows(load_rows(dataset), recipe.method, dataset)
    spec_weights = prepare_weights(model, weights, recipe.quant)
    cfg = model.architecture
    extra = model.spec.extra_params if model.spec else 0
    estimate = training_memory(cfg, count_params(cfg, extra), recipe, int((target.runtime_overhead_gib if target
                               else 1.0) * 2**30), target.budget_bytes if target else None)
    if recipe.method != "full" and lora_params(cfg, recipe) == 0:
        raise UserError(f"recipe {recipe.id} adapts no module of {model.id} (target_modules "
                        f"{', '.join(recipe.target_modules)}; moe_targets {', '.join(recipe.moe_targets)})")
    # The adapter is saved, measured and loaded back inside the run; nothing reads it afterwards.
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-{recipe.id}-"))
    settings = FinetuneSettings(
        model_path=spec_weights.path, recipe=recipe.model_dump(), device=device, steps=steps or recipe.steps,
        dataset=dataset, adapter_dir=str(scratch / "adapter"),
        target_budget_bytes=cap.target_cuda_bytes if cap.emulated else None, synthetic_weights=random_base)
    try:
        return execute("finetune", "bench.scenarios.finetune:measure", asdict(settings), model=model,
                       weights=spec_weights, device=device, gpu=target, cap=cap,
                       config={"recipe": recipe.model_dump(), "steps": settings.steps, "dataset": settings.dataset,
                               "device": device},
                       results_dir=results_dir, timeout_s=timeout_s, labels=labels,
                       estimate={"training_memory_bytes": estimate.total_bytes,
                                 "lower_bound_bytes": estimate.lower_bound_bytes,
                                 "breakdown": {"weights": estimate.weights_bytes, "trainable": estimate.trainable_bytes,
                                               "activations": estimate.activations_bytes,
                                               "logits": estimate.logits_bytes, "overhead": estimate.overhead_bytes},
                                 "note": "bench's estimator at the recipe's settings; compare with peak_memory_bytes "
                                         "(on a GPU; a CPU run's peak RSS includes the Python runtime)"})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _is_hub_dataset(dataset: str) -> bool:
    return not dataset.startswith("builtin:") and Path(dataset).suffix != ".jsonl"
