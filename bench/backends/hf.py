"""transformers as an inference engine: `generate` with a time-stamping streamer.

Output length is forced with `min_new_tokens = max_new_tokens`; the KV cache is
the library's default dynamic cache; attention is SDPA. On CUDA a memory cap
(emulating a smaller card) is torch's per-process memory fraction, so going past it
raises an out-of-memory error exactly as the smaller card would.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.generation.streamers import BaseStreamer

from bench.backends.base import EngineSettings, Generation

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class _Stamps(BaseStreamer):
    """Records when each decoding step hands back tokens (the first `put` is the prompt)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._seen_prompt = False

    def put(self, value: torch.Tensor) -> None:
        if not self._seen_prompt:
            self._seen_prompt = True
            return
        self.times.append(time.perf_counter() - self.start)

    def end(self) -> None:
        """Nothing to flush: the stamps are complete when generation returns."""


class TransformersBackend:
    name = "transformers"

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.model: Any = None

    def load(self) -> None:
        s = self.settings
        device = torch.device(s.device)
        if s.device == "cuda" and s.memory_fraction is not None:
            torch.cuda.set_per_process_memory_fraction(s.memory_fraction, device)
        kwargs: dict[str, Any] = {"dtype": DTYPES[s.dtype]}
        if s.quant in ("nf4", "int8"):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = (
                BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=DTYPES[s.dtype])
                if s.quant == "nf4" else BitsAndBytesConfig(load_in_8bit=True))
        if s.synthetic_weights:
            config = AutoConfig.from_pretrained(s.model_path, trust_remote_code=s.trust_remote_code)
            torch.manual_seed(s.seed)
            with device:  # materialise random weights directly on the device
                self.model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[s.dtype],
                                                              trust_remote_code=s.trust_remote_code)
        else:
            self.model = AutoModelForCausalLM.from_pretrained(
                s.model_path, use_safetensors=True, device_map=s.device, revision=s.revision,
                trust_remote_code=s.trust_remote_code, **kwargs)
        self.model.eval()
        if s.device == "cuda":
            torch.cuda.synchronize()

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[Generation]:
        lengths = {len(p) for p in prompts}
        if len(lengths) != 1:
            raise ValueError("prompts of one batch must have equal length (no padding in timed runs)")
        input_ids = torch.tensor(prompts, device=self.model.device)
        stamps = _Stamps()
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens, do_sample=False, streamer=stamps, pad_token_id=0)
        if self.settings.device == "cuda":
            torch.cuda.synchronize()
        produced = out.shape[1] - input_ids.shape[1]
        return [Generation(output_tokens=produced, token_times=list(stamps.times)) for _ in prompts]

    def engine_info(self) -> dict[str, Any]:
        return {"engine": "transformers", "attn_implementation": getattr(self.model.config, "_attn_implementation",
                                                                         None),
                "memory_fraction": self.settings.memory_fraction}

    def close(self) -> None:
        self.model = None
        if self.settings.device == "cuda":
            torch.cuda.empty_cache()
