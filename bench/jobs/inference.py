"""`bench run`: turn command-line choices into an isolated inference measurement and a record."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bench.config.registry import Registry
from bench.errors import UserError
from bench.estimate.params import count_params
from bench.estimate.quant import weight_format
from bench.estimate.roofline import roofline
from bench.jobs.preflight import check_driver, check_engine, check_llamacpp_cap, choose_backend, vllm_batch_tokens
from bench.jobs.runner import (
    check_device,
    cpu_kv_budget,
    execute,
    gguf_weights,
    installed_engines,
    prepare_weights,
    resolve_model,
    weights_kind,
)
from bench.scenarios.inference import InferenceSettings

DTYPE_OF_QUANT = {"fp16": "float16"}


def run_inference(registry: Registry, model_name: str, *, gpu: str | None, backend: str | None, quant: str,
                  weights: str | None, device: str, batch: int, prompt_len: int, output_len: int,
                  context: int | None, min_iterations: int, min_duration_s: float, results_dir: Path,
                  timeout_s: float, labels: dict[str, str] | None = None, max_model_len: int | None = None,
                  gguf: str | None = None):
    """Check everything that can be checked before the run (engine x quant x device x weights,
    cards, lengths, disk), then download if needed and measure in a child process.

    `max_model_len` sizes the engine's context (vLLM and llama.cpp allocate its KV cache up front)
    without a request that fills it: on a CPU, prefilling 32k tokens of a 24B model takes longer
    than the memory question is worth. `gguf` names a real GGUF file for llama.cpp (see bench.weights.gguf_file)."""
    model = resolve_model(registry, model_name)
    target = registry.gpu(gpu) if gpu else None
    backend = choose_backend(backend, quant)
    check_engine(backend, quant, device, weights_kind(model, weights), installed_engines())
    if output_len < 2:
        raise UserError("--output-len must be at least 2 (inter-token latency needs two tokens)")
    cfg = model.architecture
    max_len = max(prompt_len + output_len, context or 0, max_model_len or 0)
    if max_len > cfg.max_position_embeddings:
        raise UserError(f"{max_len} tokens exceed {model.id}'s maximum of {cfg.max_position_embeddings}")
    cap = check_device(device, target, model.id, on_device_budget=backend == "llama.cpp")
    check_llamacpp_cap(backend, cap, target)
    if device == "cuda":
        from bench.launch.environment import driver_floor, driver_version

        check_driver(backend, driver_version(), driver_floor(backend))
    gguf_file = None
    if backend == "llama.cpp":
        spec_weights, gguf_file = gguf_weights(model, weights, quant, gguf)
    elif gguf is not None:
        raise UserError("--gguf is a file for --backend llama.cpp")
    else:
        spec_weights = prepare_weights(model, weights, quant)
    engine = dict(
        model_path=spec_weights.path, device=device, dtype=DTYPE_OF_QUANT.get(quant, "bfloat16"), quant=quant,
        # llama.cpp loads a GGUF file that holds its random weights: nothing for the engine to make.
        synthetic_weights=(spec_weights.kind == "synthetic" and not (model.spec and model.spec.synthetic)
                           and backend != "llama.cpp"),
        max_model_len=max_len, max_batch=batch,
        kv_cache_bytes=cpu_kv_budget(cfg, max_len, batch) if device == "cpu" and backend != "llama.cpp" else None,
        enforce_eager=device == "cpu",  # CPU graph compilation costs more start-up than it saves here
        trust_remote_code=bool(model.spec and model.spec.trust_remote_code),
        revision=None,
        tensor_parallel_size=target.device_count if target and device == "cuda" else 1,
        # vLLM caps its own default at max_num_seqs x max_model_len; the target's default is capped the same way.
        max_num_batched_tokens=min(vllm_batch_tokens(target), batch * max_len) if cap.emulated else None,
    )
    settings = InferenceSettings(
        roofline_decode_tokens_per_s=_roofline_bound(registry, model, cap.card_name, quant, prompt_len),
        backend=backend, engine=engine, vocab_size=cfg.vocab_size, prompt_len=prompt_len, output_len=output_len,
        batch=batch, context=context, min_iterations=min_iterations, min_duration_s=min_duration_s,
        target_budget_bytes=cap.target_cuda_bytes if cap.emulated else None,
        gguf_file=gguf_file.to_dict() if gguf_file else None)
    return execute("inference", "bench.scenarios.inference:measure", asdict(settings), model=model,
                   weights=spec_weights, device=device, gpu=target, config={"scenario": asdict(settings)},
                   results_dir=results_dir, timeout_s=timeout_s, cap=cap, labels=labels)


def _roofline_bound(registry: Registry, model, card_name: str | None, quant: str, context: int) -> float | None:
    """Batch-1 decode bound of the card this run uses; None on a CPU, or a card NVML did not name or
    the registry does not know (the parent names the card through NVML, never through CUDA)."""
    profile = registry.gpu_for_device(card_name) if card_name else None
    if profile is None:
        return None
    params = count_params(model.architecture, model.spec.extra_params if model.spec else 0)
    return roofline(model.architecture, params, weight_format(quant), profile, context, 1).decode_tokens_per_s
