"""Speed bounds from the card's datasheet: bandwidth for decode, FLOP/s for prefill.

Decoding one token reads every active weight and the KV cache once, so at batch 1
bandwidth / bytes-read is an upper bound on tokens/s. Prefill is compute bound:
dense FLOP/s over 2 x active parameters per token plus attention. With several
devices the bound assumes ideal tensor parallelism (bandwidth and FLOP/s add up).
Measured runs report the fraction of these bounds they reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.config.hfconfig import TextConfig
from bench.config.specs import HardwareSpec
from bench.estimate.gguf import gguf_read_bytes_per_token
from bench.estimate.memory import kv_cache_bytes
from bench.estimate.params import ParamCounts
from bench.estimate.quant import WeightFormat, weight_bytes_of

if TYPE_CHECKING:  # a plan imports the checkpoint reader only for a subject that has one
    from bench.estimate.checkpoint import CheckpointWeights


def decode_bytes_per_step(cfg: TextConfig, params: ParamCounts, fmt: WeightFormat, context: int,
                          batch: int, kv_dtype_bytes: int = 2, stored: CheckpointWeights | None = None) -> float:
    """Bytes one decode step reads: the weights it touches and every sequence's KV cache.

    The embedding lookup reads one row, not the matrix (unless it doubles as lm_head).
    At batch > 1 an MoE layer touches more experts: the expected number of distinct
    experts among `batch` tokens each routed to k of E. With `stored`, the checkpoint the
    weights are held as (a pre-quantized repository in its own format), its real bytes
    stand for the arithmetic's: its routed experts at the share visited, the rest whole,
    less the input embedding (unless tied) and any vision tower.
    """
    experts_read = params.active_experts
    if cfg.is_moe and params.experts:
        n, k = cfg.routed_experts or 1, cfg.num_experts_per_tok or 1
        distinct = n * (1 - (1 - k / n) ** batch)
        experts_read = params.experts * distinct / n
    share = experts_read / params.experts if params.experts else 0
    if stored is not None:
        weights = (stored.total_bytes - stored.expert_bytes - stored.vision_bytes + stored.expert_bytes * share
                   - (0 if cfg.tie_word_embeddings else stored.embedding_bytes))
    elif fmt.gguf:  # the GGUF tensors themselves, routed experts at the share read
        weights = gguf_read_bytes_per_token(cfg, fmt.name, share)
    else:
        kept = params.high_precision - params.extra - (0 if cfg.tie_word_embeddings else params.embedding)
        weights = weight_bytes_of(fmt, params.attention + params.dense_mlp, experts_read, kept)
    return weights + kv_cache_bytes(cfg, context, batch, kv_dtype_bytes)


def attention_flops_per_token(cfg: TextConfig, context: int) -> float:
    """QK^T and AV for one token against the tokens before it (on average half the context)."""
    per_layer = 0.0
    for layer_type in cfg.attention_layer_types():
        window = cfg.kv_window(layer_type)
        span = context / 2 if window is None else min(context / 2, window)
        per_layer += 2 * 2 * cfg.num_attention_heads * cfg.head_size * span
    return per_layer


def matmul_params(cfg: TextConfig, params: ParamCounts) -> int:
    """Active parameters that do multiply-adds per token (the embedding lookup does none)."""
    return params.active - (0 if cfg.tie_word_embeddings else params.embedding)


@dataclass(frozen=True)
class Roofline:
    decode_tokens_per_s: float  # batch 1
    throughput_tokens_per_s: float  # decode at `batch`, output tokens
    prefill_tokens_per_s: float
    train_tokens_per_s: float | None = None


def _bandwidth(gpu: HardwareSpec) -> float:
    return gpu.memory_bandwidth_gbs * 1e9 * gpu.device_count


def decode_tokens_per_s(cfg: TextConfig, params: ParamCounts, fmt: WeightFormat, gpu: HardwareSpec,
                        context: int, kv_dtype_bytes: int = 2, stored: CheckpointWeights | None = None) -> float:
    """The batch-1 decode bound alone: what quant advice ranks formats by, without the rest of the roofline."""
    return _bandwidth(gpu) / decode_bytes_per_step(cfg, params, fmt, context, 1, kv_dtype_bytes, stored)


def roofline(cfg: TextConfig, params: ParamCounts, fmt: WeightFormat, gpu: HardwareSpec,
             context: int, batch: int, kv_dtype_bytes: int = 2, stored: CheckpointWeights | None = None
             ) -> Roofline:
    bandwidth = _bandwidth(gpu)
    flops = gpu.bf16_tflops * 1e12 * gpu.device_count
    per_token = 2 * matmul_params(cfg, params) + attention_flops_per_token(cfg, context)

    decode = decode_tokens_per_s(cfg, params, fmt, gpu, context, kv_dtype_bytes, stored)
    step_s = max(decode_bytes_per_step(cfg, params, fmt, context, batch, kv_dtype_bytes, stored) / bandwidth,
                 batch * per_token / flops)
    return Roofline(
        decode_tokens_per_s=decode,
        throughput_tokens_per_s=batch / step_s,
        prefill_tokens_per_s=flops / per_token,
    )


def train_tokens_per_s(cfg: TextConfig, params: ParamCounts, gpu: HardwareSpec, sequence_length: int,
                       full: bool, checkpointing: bool) -> float:
    """Forward (2N), gradient w.r.t. activations (2N), w.r.t. weights when training all of them
    (2N), and a second forward when checkpointing: FLOP per token, against dense FLOP/s."""
    forward = 2 * matmul_params(cfg, params) + attention_flops_per_token(cfg, sequence_length)
    passes = 2 + (1 if full else 0) + (1 if checkpointing else 0)
    return gpu.bf16_tflops * 1e12 * gpu.device_count / (forward * passes)
