"""`bench trace`: a recipe's training step traced on fake tensors at the real size, isolated, beside the estimate.

The child (`bench.scenarios.trace`) needs the model's config and tokenizer only, never its
weights, so any registry shape traces without a download. The record (kind ``trace``) holds
the tensor peak by category and phase; the estimate's active peak sits beside it, and the
card's budget when --gpu names one, so the two can be read together.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.config.registry import Registry
from bench.config.specs import HardwareSpec, RecipeSpec
from bench.errors import UserError
from bench.estimate.params import count_params
from bench.estimate.training import training_memory
from bench.jobs.runner import ResolvedModel, Weights, execute, resolve_model
from bench.scenarios.finetune_settings import FinetuneSettings
from bench.scenarios.trace_settings import routes_by_value, unsupported_trace

TRACE_DEVICES = ("cuda", "cpu")


def run_trace(registry: Registry, model_name: str, *, recipe_name: str, gpu: str | None, batch: int | None,
              context: int | None, device: str, steps: int, results_dir: Path, timeout_s: float):
    """`bench trace`: the registry's recipe, with the micro batch and sequence length asked for."""
    recipe = registry.recipe(recipe_name)
    recipe = recipe.model_copy(update={"micro_batch": batch or recipe.micro_batch,
                                       "sequence_length": context or recipe.sequence_length})
    return trace_recipe(resolve_model(registry, model_name), recipe, registry.gpu(gpu) if gpu else None,
                        device=device, steps=steps, results_dir=results_dir, timeout_s=timeout_s)


def trace_recipe(model: ResolvedModel, recipe: RecipeSpec, target: HardwareSpec | None, *, device: str, steps: int,
                 results_dir: Path, timeout_s: float):
    """Trace `recipe` on `model` in a child process and write the record, the estimate at the same settings
    beside it (`scripts/trace_claims.py` passes recipes of published conditions here)."""
    arch = model.architecture
    refused = unsupported_trace(recipe.method, recipe.quant, routes_by_value(arch.model_type, arch.is_moe),
                                recipe.dpo_reference, device)
    if refused:
        raise UserError(f"{model.id} with recipe {recipe.id}: {refused}")
    if device == "cuda" and not _torch_has_cuda():
        raise UserError("--device cuda: this torch is built without CUDA, and autograd's backward over fake CUDA "
                        "tensors needs CUDA's streams and events to accumulate gradients; trace with --device cpu "
                        "(the step `bench finetune --device cpu` takes)")
    cfg = model.architecture
    extra = model.spec.extra_params if model.spec else 0
    estimate = training_memory(cfg, count_params(cfg, extra), recipe,
                               int((target.runtime_overhead_gib if target else 1.0) * 2**30),
                               target.budget_bytes if target else None, device=device)
    weights = _config_only(model)
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-trace-{recipe.id}-"))
    settings = FinetuneSettings(model_path=weights.path, recipe=recipe.model_dump(), device=device, steps=steps,
                                dataset="trace", adapter_dir=str(scratch / "adapter"), cpu_dtype="bfloat16")
    try:
        return execute("trace", "bench.scenarios.trace:measure", asdict(settings), model=model, weights=weights,
                       device=device, gpu=target, config={"recipe": recipe.model_dump(), "steps": steps,
                                                          "device": device, "traced": True},
                       results_dir=results_dir, timeout_s=timeout_s,
                       estimate={"active_peak_bytes": estimate.active_peak_bytes,
                                 "training_memory_bytes": estimate.total_bytes,
                                 "overhead_bytes": estimate.overhead_bytes,
                                 "budget_bytes": estimate.budget_bytes,
                                 "note": "bench's estimator at the same settings and device: compare its active "
                                         "peak with traced_peak_bytes; the card needs the overhead beyond it"})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _torch_has_cuda() -> bool:
    """Whether the installed torch is a CUDA build (it ships libtorch_cuda), found without importing torch."""
    import importlib.util

    found = importlib.util.find_spec("torch")
    return bool(found and found.origin and any((Path(found.origin).parent / "lib").glob("libtorch_cuda*")))


def _config_only(model: ResolvedModel) -> Weights:
    """The model's config and a tokenizer, which is all a trace reads (no weights are downloaded or read: the
    record's weights are "synthetic", a shape without values)."""
    if model.local_path is not None:
        return Weights(str(model.local_path), "synthetic", None, None, None)
    from bench.weights import synthetic_hf

    spec = model.spec
    return Weights(str(synthetic_hf.build(spec, with_weights=False)), "synthetic", spec.repo,
                   spec.revision if spec.repo else None, None)
