"""What each engine can run, and where: the capability tables every layer reads.

The preflight refuses a combination these tables do not list before any download; the
backends, the `serve` command and the CLI's help read the same tables, so a format is
added or withdrawn in one place.
"""

from __future__ import annotations

from bench.estimate.gguf import GGUF_FTYPES

LLAMA_CPP_QUANTS = tuple(GGUF_FTYPES)  # every GGUF type bench lays out and llama.cpp runs, MXFP4_MOE too

BACKENDS = ("vllm", "transformers", "llama.cpp")
# Quants each engine can run, and on which devices. vLLM 0.32 has no bitsandbytes method in
# QuantizationMethods; transformers has no AWQ/GPTQ kernels without extra packages, and its fp8
# path needs an FP8 checkpoint and fp8-capable kernels, so bench sends fp8 to vLLM only.
ENGINE_QUANTS = {
    "vllm": {"cuda": ("bf16", "fp16", "fp8", "int4"), "cpu": ("bf16", "fp16")},
    "transformers": {"cuda": ("bf16", "fp16", "nf4", "int8"), "cpu": ("bf16", "fp16", "nf4", "int8")},
    "llama.cpp": {"cuda": LLAMA_CPP_QUANTS, "cpu": LLAMA_CPP_QUANTS},
}
# Quants that random weights can be made in: 16-bit, and NF4 quantized layer by layer as it is made.
# llama.cpp: a GGUF file of random weights in any GGUF type, written by `bench.weights.synthetic_gguf`.
SYNTHETIC_QUANTS = {"vllm": ("bf16", "fp16", "fp8"), "transformers": ("bf16", "fp16", "nf4"),
                    "llama.cpp": LLAMA_CPP_QUANTS}
# Quants served from a 16-bit repository: loaded as stored, cast, or quantized while loading.
FROM_16_BIT = ("bf16", "fp16", "nf4", "int8")
