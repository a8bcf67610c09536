"""Weight formats: how many bits a quantised weight costs, scales included.

"4-bit" is never 0.5 byte per parameter: every format stores scales beside the
packed weights, and every format leaves some tensors in 16 bits. The numbers
below are the storage layouts of the formats themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.errors import unknown_name_error


@dataclass(frozen=True)
class WeightFormat:
    name: str
    bits_per_weight: float  # for the linear layers it quantises, scales included
    description: str
    # transformers 5 stores MoE experts as fused 3-D parameters, not nn.Linear, and its
    # bitsandbytes integration (integrations/bitsandbytes.py, replace_with_bnb_linear) swaps
    # nn.Linear only: under bitsandbytes the routed experts stay 16-bit.
    packs_fused_experts: bool = True
    # A llama.cpp GGUF type: its bytes come tensor by tensor from bench.estimate.gguf, and
    # bits_per_weight is only the nominal width of its main block type (ranking, labels).
    gguf: bool = False
    # Served only from a repository already quantised (AWQ/GPTQ): no engine makes it while loading.
    prequantized: bool = False

    @property
    def quantises(self) -> bool:
        return self.bits_per_weight < 16


BF16 = WeightFormat("bf16", 16.0, "bfloat16 weights")
FP16 = WeightFormat("fp16", 16.0, "float16 weights")
FP8 = WeightFormat("fp8", 8.0, "fp8 e4m3 linear weights, per-channel scales (vLLM fp8)")
INT8 = WeightFormat("int8", 8.0, "bitsandbytes LLM.int8 linear weights, per-row scales",
                    packs_fused_experts=False)
# NF4: 4-bit codes plus one fp32 absmax per block of 64 weights = 4 + 32/64 bits.
NF4 = WeightFormat("nf4", 4.5, "bitsandbytes NF4, blocks of 64 with fp32 absmax", packs_fused_experts=False)
# Double quantisation stores the absmax in 8 bits, with one fp32 scale per 256 absmax: 4 + 8/64 + 32/(64*256).
NF4_DOUBLE = WeightFormat("nf4", 4 + 8 / 64 + 32 / (64 * 256), "bitsandbytes NF4 with double quantisation",
                          packs_fused_experts=False)
# AWQ/GPTQ: packed 4-bit weights, per group of 128 an fp16 scale and a 4-bit zero point: 4 + 20/128.
INT4 = WeightFormat("int4", 4 + 20 / 128, "AWQ/GPTQ 4-bit, group size 128, fp16 scale + 4-bit zero",
                    prequantized=True)

# GGUF types (llama.cpp): nominal bits of the main block type (bytes per block x 8 / weights per block).
# `bf16` stays bench's 16-bit format above: a GGUF BF16 file holds the same bytes but for its F32 norms.
GGUF_FORMATS = (
    WeightFormat("f16", 16.0, "GGUF F16 (llama.cpp), norms F32", gguf=True),
    WeightFormat("q8_0", 34 * 8 / 32, "GGUF Q8_0: blocks of 32, int8 + fp16 scale", gguf=True),
    WeightFormat("q6_k", 210 * 8 / 256, "GGUF Q6_K: super-blocks of 256, 210 bytes", gguf=True),
    WeightFormat("q5_k_m", 176 * 8 / 256, "GGUF Q5_K_M: Q5_K with attn_v/ffn_down partly Q6_K", gguf=True),
    WeightFormat("q5_k_s", 176 * 8 / 256, "GGUF Q5_K_S: Q5_K, output Q6_K", gguf=True),
    WeightFormat("q4_k_m", 144 * 8 / 256, "GGUF Q4_K_M: Q4_K with attn_v/ffn_down partly Q6_K", gguf=True),
    WeightFormat("q4_k_s", 144 * 8 / 256, "GGUF Q4_K_S: Q4_K, first layers' attn_v/ffn_down Q5_K", gguf=True),
    WeightFormat("q4_0", 18 * 8 / 32, "GGUF Q4_0: blocks of 32, 4-bit + fp16 scale", gguf=True),
    # gpt-oss's published type: the experts MXFP4 (blocks of 32 E2M1 codes and one E8M0 exponent byte),
    # every other quantized tensor Q8_0.
    WeightFormat("mxfp4_moe", 17 * 8 / 32, "GGUF MXFP4_MOE: experts MXFP4 (blocks of 32, 17 bytes), the rest Q8_0",
                 gguf=True),
)

FORMATS: dict[str, WeightFormat] = {f.name: f for f in (BF16, FP16, FP8, INT8, NF4, INT4, *GGUF_FORMATS)}
# The formats bitsandbytes makes while loading a 16-bit checkpoint (transformers only; trl casts
# adapters over such a base to bf16).
BITSANDBYTES_QUANTS = ("nf4", "int8")

# Tensors every format above keeps in 16 bits: token embeddings, lm_head, norms, MoE routers, biases.
HIGH_PRECISION_BITS = 16


def by_precision(quants: Iterable[str]) -> list[str]:
    """The formats most precise first, the one ordering every piece of quant advice uses: more bits per
    weight of the quantised layers first (a GGUF type by its main block type), and among equal bits the
    order of FORMATS (bf16, fp16, then GGUF f16; nf4 before the 4.5-bit GGUF types; a _M mix before its
    _S, which keeps fewer tensors at higher precision, and both before q4_0)."""
    order = list(FORMATS)
    return sorted(set(quants), key=lambda q: (-FORMATS[q].bits_per_weight, order.index(q)))


def weight_bytes_of(fmt: WeightFormat, linear: float, experts: float, kept: float) -> float:
    """Bytes of `linear` nn.Linear weights, `experts` fused expert weights and `kept` 16-bit tensors."""
    packed = linear + (experts if fmt.packs_fused_experts else 0)
    unpacked = kept + (0 if fmt.packs_fused_experts else experts)
    return packed * fmt.bits_per_weight / 8 + unpacked * HIGH_PRECISION_BITS / 8


def weight_format(name: str, double_quant: bool = False) -> WeightFormat:
    if name not in FORMATS:
        raise unknown_name_error("quant", name, FORMATS)
    if name == "nf4" and double_quant:
        return NF4_DOUBLE
    return FORMATS[name]
