"""`bench trace`: a recipe's training step traced on fake tensors at the real size, isolated, beside the estimate.

The child (`bench.scenarios.trace`) needs the model's config and tokenizer only, never its
weights, so any registry shape traces without a download. The record (kind ``trace``) holds
the tensor peak by category and phase; the estimate's active peak sits beside it, and the
card's budget when --gpu names one, so the two can be read together. With --quant the trace is one
generate of `bench run --backend transformers` instead (`run_inference_trace`), beside bench's
inference estimate at the same quant, context and batch.
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


def inference_refusal(quant: str, device: str, moe_by_value: bool = False) -> str | None:
    """Why `bench run --backend transformers` at this quant and device cannot be traced, as one line; None if it
    can. nf4: on a CPU, bitsandbytes' Linear4bit repacks each weight for its AVX512 kernel on the first forward
    in eval mode (`_convert_weight_packed_for_cpu`, from the packed codes' values), which fake tensors do not
    have; LLM.int8 picks outlier columns by value; an MoE router's token counts are values too. CUDA: a CPU-only
    torch has no CUDA device guard."""
    from bench.backends.capabilities import ENGINE_QUANTS

    runs = ENGINE_QUANTS["transformers"]["cpu"]
    if quant not in runs:
        return (f"--quant {quant}: the trace follows `bench run --backend transformers`, which runs "
                f"{', '.join(runs)}")
    if quant in ("nf4", "int8"):
        why = ("bitsandbytes' Linear4bit repacks its weights for the CPU's AVX512 kernel from their values on the "
               "first eval forward (_convert_weight_packed_for_cpu)" if quant == "nf4" else
               "LLM.int8 splits the outlier columns it finds in the input's values")
        return f"--quant {quant}: an inference trace runs bf16 or fp16 only: {why}, which fake tensors do not have"
    if moe_by_value:
        return ("an MoE model's router sends each expert the tokens it picks, a count read from values that a "
                "fake-tensor trace cannot know")
    if device != "cpu":
        return ("an inference trace runs with --device cpu (the generate of `bench run --backend transformers "
                "--device cpu`): fake CUDA tensors need torch's CUDA device guard, which a CPU-only torch lacks")
    return None


# The defaults of `bench run`: its prompt of 128 tokens, 64 generated, 8 requests submitted together.
INFERENCE_PROMPT_LEN, INFERENCE_OUTPUT_LEN, INFERENCE_BATCH = 128, 64, 8


def run_inference_trace(registry: Registry, model_name: str, *, quant: str, gpu: str | None, batch: int | None,
                        context: int | None, output_len: int | None, device: str, results_dir: Path,
                        timeout_s: float):
    """`bench trace --quant`: one generate of `bench run --backend transformers` traced on fake tensors, `batch`
    sequences of `context` tokens (the prompt, then `output_len` generated), the estimate beside it."""
    from bench.estimate.memory import inference_memory
    from bench.estimate.quant import weight_format

    model = resolve_model(registry, model_name)
    target = registry.gpu(gpu) if gpu else None
    refused = inference_refusal(quant, device, routes_by_value(model.architecture.model_type,
                                                               model.architecture.is_moe))
    if refused:
        raise UserError(f"{model.id}: {refused}")
    output_len = output_len or INFERENCE_OUTPUT_LEN
    context = context or INFERENCE_PROMPT_LEN + output_len
    batch = batch or INFERENCE_BATCH
    if output_len < 2 or context <= output_len:
        raise UserError(f"--context {context} must exceed --output-len {output_len} (at least 2): the prompt is "
                        "the context less the generated tokens")
    cfg = model.architecture
    if context > cfg.max_position_embeddings:
        raise UserError(f"{context} tokens exceed {model.id}'s maximum of {cfg.max_position_embeddings}")
    extra = model.spec.extra_params if model.spec else 0
    estimate = inference_memory(cfg, count_params(cfg, extra), weight_format(quant), context, batch,
                                int((target.runtime_overhead_gib if target else 1.0) * 2**30),
                                target.budget_bytes if target else None, kv_engine="transformers")
    inference = {"quant": quant, "context": context, "prompt_len": context - output_len, "batch": batch,
                 "output_len": output_len}
    weights = _config_only(model)
    settings = {"model_path": weights.path, "vocab_size": cfg.vocab_size, "device": device,
                **{k: inference[k] for k in ("quant", "prompt_len", "batch", "output_len")}}
    return execute("trace", "bench.scenarios.trace:measure_inference", settings, model=model,
                   weights=weights, device=device, gpu=target,
                   config={"inference": inference, "device": device, "traced": True},
                   results_dir=results_dir, timeout_s=timeout_s,
                   estimate={"active_peak_bytes": estimate.total_bytes - estimate.overhead_bytes,
                             "weights_bytes": estimate.weights_bytes, "kv_cache_bytes": estimate.kv_cache_bytes,
                             "activations_bytes": estimate.activations_bytes, "logits_bytes": estimate.logits_bytes,
                             "inference_memory_bytes": estimate.total_bytes,
                             "overhead_bytes": estimate.overhead_bytes, "budget_bytes": estimate.budget_bytes,
                             "note": "bench's inference estimate (transformers' KV cache rules) at the same quant, "
                                     "context and batch: compare its active peak with traced_peak_bytes; the card "
                                     "needs the overhead beyond it"})
