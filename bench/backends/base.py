"""The interface every inference engine implements, and what it returns.

A backend loads one model under a memory budget and generates a fixed number of
tokens for prompts given as token ids (never text, so every engine sees the same
inputs and token counts come from the engine, not from re-tokenising output).
Each generated token is time-stamped as the engine hands it back, which is what
TTFT and inter-token latency are made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class EngineSettings:
    model_path: str
    device: str  # "cuda" or "cpu"
    dtype: str = "bfloat16"
    quant: str = "bf16"
    synthetic_weights: bool = False  # the engine makes random weights from the config (no checkpoint)
    max_model_len: int = 2048
    max_batch: int = 1
    memory_fraction: float | None = None  # cap on each card's memory (emulating a smaller card)
    kv_cache_bytes: int | None = None  # CPU engines: the KV budget to reserve
    seed: int = 0
    enforce_eager: bool = False
    trust_remote_code: bool = False
    revision: str | None = None
    tensor_parallel_size: int = 1  # split the model over this many GPUs (multi-card targets)
    max_num_batched_tokens: int | None = None  # vLLM: the target card's class default (None: vLLM's own)


@dataclass
class Generation:
    """One request's output: how many tokens the engine produced and when each arrived.

    `token_times` are seconds since the batch was submitted, one per generated token.
    """

    output_tokens: int
    token_times: list[float] = field(default_factory=list)


class Backend(Protocol):
    name: str

    def load(self) -> None:
        """Load weights (or build random ones) onto the device."""

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[Generation]:
        """Generate exactly `max_new_tokens` for every prompt (end-of-sequence ignored)."""

    def engine_info(self) -> dict[str, Any]:
        """What the engine itself reports about memory and configuration (for the record)."""

    def close(self) -> None:
        """Release the engine and its device memory."""
