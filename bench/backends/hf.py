"""transformers as an inference engine: `generate` with a time-stamping streamer.

Output length is forced with `min_new_tokens = max_new_tokens`; the KV cache is
the library's default dynamic cache; attention is SDPA. On CUDA a memory cap
(emulating a smaller card) is torch's per-process memory fraction on every card the
run uses, so going past it raises an out-of-memory error exactly as the smaller card
would; a multi-card target spreads the model over that many cards, none over its cap.

Weights: a checkpoint in 16 bits, or quantized by bitsandbytes while loading (nf4,
int8); with synthetic weights, random ones made in the same formats by
`bench.weights.synthetic_nf4`. The record says which format the loaded modules hold, so a
run can never claim a quant it did not run.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig
from transformers.generation.streamers import BaseStreamer

from bench.backends.base import EngineSettings, Generation
from bench.backends.capabilities import ENGINE_QUANTS

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
# 16-bit as stored or cast; NF4 and LLM.int8 by bitsandbytes while loading. fp8 and int4 need
# an FP8 or AWQ/GPTQ checkpoint and their kernels: bench runs those on vLLM (bench.jobs.preflight).
QUANTS = ENGINE_QUANTS["transformers"]["cuda"]


@dataclass(frozen=True)
class Placement:
    """Where the model goes: `from_pretrained`'s device_map and max_memory, and the cards to cap."""

    device_map: Any
    max_memory: dict[int, int] | None
    cards: tuple[int, ...]  # CUDA indices the run uses, each capped by the memory fraction

    @property
    def device(self) -> torch.device:
        """Where random weights are made before placement: the first card, or the CPU."""
        return torch.device("cuda", self.cards[0]) if self.cards else torch.device("cpu")

    def check(self, placed: dict[str, Any]) -> None:
        """Refuse a model that spilled off its cards: accelerate offloads what does not fit under
        max_memory to the CPU or the disk (from a safetensors checkpoint, silently), which would
        let a model that does not fit the cards run, slowly, and count as fitting."""
        spilled = sorted({str(device) for device in placed.values()} - {str(card) for card in self.cards})
        if self.cards and spilled:
            raise torch.OutOfMemoryError(
                f"the model does not fit {len(self.cards)} card(s) of {self.max_memory} bytes: "
                f"accelerate placed part of it on {', '.join(spilled)}")

    def check_model(self, model: Any) -> None:
        """`check` over where the model's parameters are, beside accelerate's map.

        The map alone can say nothing: on one card the map is bench's own `{"": card}`, and a
        model loaded without a map has none; a parameter left on the CPU (or the meta device,
        for one offloaded to disk) is seen wherever it came from.
        """
        placed = dict(getattr(model, "hf_device_map", None) or {})
        for name, param in model.named_parameters():
            placed[f"parameter {name}"] = param.device.index if param.device.type == "cuda" else param.device.type
        self.check(placed)


def placement(device: str, cards: int, current_card: int, card_budget_bytes: int | None) -> Placement:
    """One card: the whole model on the current card. Several: accelerate's "auto" map over
    exactly `cards` cards, each allowed `card_budget_bytes` (the cap); no CPU budget is given,
    and `Placement.check` refuses what accelerate still spills."""
    if device != "cuda":
        return Placement({"": "cpu"}, None, ())
    if cards == 1:
        return Placement({"": current_card}, None, (current_card,))
    if card_budget_bytes is None:
        raise ValueError("spreading over several cards needs each card's memory budget")
    used = tuple(range(current_card, current_card + cards))
    return Placement("auto", {card: card_budget_bytes for card in used}, used)


def auto_class_for(config: Any):
    """The auto class transformers maps this model type to: causal LM, else image-text-to-text.

    A vision-language checkpoint (`Mistral3ForConditionalGeneration`, model_type mistral3) is
    not in transformers' causal-LM mapping; its image-text-to-text class generates from token
    ids alone, so text-only runs load the checkpoint as published.
    """
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if not causal and config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


def weights_format(model: Any) -> str:
    """The format the loaded weights are held in, read from the modules themselves.

    nf4 (or fp4) where a bitsandbytes 4-bit layer is present, int8 for LLM.int8 layers,
    fp8 for transformers' FP8 layers; else the dtype that holds most parameters. A module
    can only be of a library that was imported, so nothing is imported here.
    """
    bnb = sys.modules.get("bitsandbytes")
    fp8 = sys.modules.get("transformers.integrations.finegrained_fp8")
    for module in model.modules():
        if bnb is not None and isinstance(module, bnb.nn.Linear4bit):
            return module.weight.quant_type
        if bnb is not None and isinstance(module, bnb.nn.Linear8bitLt):
            return "int8"
        if fp8 is not None and isinstance(module, fp8.FP8Linear):
            return "fp8"
    held: Counter[torch.dtype] = Counter()
    for param in model.parameters():
        held[param.dtype] += param.numel()
    dtype = held.most_common(1)[0][0]
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def quantization_config(quant: str, dtype: torch.dtype):
    """bitsandbytes' config for a quant it makes while loading; None for 16-bit weights."""
    if quant not in QUANTS:
        raise ValueError(f"the transformers backend runs {', '.join(QUANTS)}, not {quant}: "
                         f"{quant} needs its own checkpoint and kernels (use --backend vllm)")
    if quant == "nf4":
        from bench.weights.synthetic_nf4 import nf4_config

        return nf4_config(double_quant=True, compute_dtype=dtype)
    if quant == "int8":
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True)
    return None


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
        self.placement: Placement | None = None

    def load(self) -> None:
        s = self.settings
        dtype = DTYPES[s.dtype]
        quantization = quantization_config(s.quant, dtype)
        self.placement = where = self._place()
        if s.memory_fraction is not None:
            for card in where.cards:
                torch.cuda.set_per_process_memory_fraction(s.memory_fraction, card)
        config = AutoConfig.from_pretrained(s.model_path, trust_remote_code=s.trust_remote_code,
                                            revision=s.revision)
        auto_class = auto_class_for(config)
        if s.synthetic_weights:
            from bench.weights.synthetic_nf4 import random_model

            self.model = random_model(config, auto_class=auto_class, dtype=dtype, device=where.device,
                                      device_map=where.device_map, max_memory=where.max_memory,
                                      quantization_config=quantization, seed=s.seed)
        else:
            self.model = auto_class.from_pretrained(
                s.model_path, config=config, use_safetensors=True, device_map=where.device_map,
                max_memory=where.max_memory, revision=s.revision, trust_remote_code=s.trust_remote_code,
                dtype=dtype, quantization_config=quantization)
        where.check_model(self.model)
        self.model.eval()
        if s.device == "cuda":
            torch.cuda.synchronize()

    def _place(self) -> Placement:
        s = self.settings
        if s.device != "cuda":
            return placement(s.device, 1, 0, None)
        current = torch.cuda.current_device()
        total = torch.cuda.get_device_properties(current).total_memory
        budget = int(s.memory_fraction * total) if s.memory_fraction is not None else total
        return placement(s.device, s.tensor_parallel_size, current, budget)

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
                "model_class": type(self.model).__name__, "weights_format": weights_format(self.model),
                "cards": list(self.placement.cards) if self.placement else [],
                "memory_fraction": self.settings.memory_fraction}

    def close(self) -> None:
        self.model = None
        if self.settings.device == "cuda":
            torch.cuda.empty_cache()
