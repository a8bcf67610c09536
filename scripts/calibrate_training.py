"""Published fine-tuning memory measurements against `bench plan`'s training estimate.

Each row is a measurement a fine-tuning project published, with its conditions written as a
bench recipe, and the estimate under those conditions: the allocator's active peak where the
source reports torch's peak (torchtune), the card total (active peak + 1 GiB of CUDA context
and caching slack) where it reports what the card used (LLaMA-Factory). A second table holds
the longest sequence that fits a card of a given size, published by Unsloth for its Hugging
Face + FlashAttention-2 baseline, against the longest bench finds. Exit 1 when a row is more
than 15% off or a fits/does-not-fit verdict disagrees with the source.

    .venv/bin/python scripts/calibrate_training.py
"""

from __future__ import annotations

import sys
from typing import Any

from bench.estimate.params import count_params
from bench.estimate.training import training_memory
from bench.config.hfconfig import TextConfig
from bench.report.terminal import table
from bench.config.specs import RecipeSpec

GIB, TOLERANCE = 2**30, 0.15
# config.json of meta-llama/Llama-3.1-8B and meta-llama/Llama-2-7b-hf (architecture facts).
LLAMA31_8B = TextConfig(model_type="llama", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=8, intermediate_size=14336, vocab_size=128256,
                        max_position_embeddings=131072, tie_word_embeddings=False)
LLAMA2_7B = TextConfig(model_type="llama", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, intermediate_size=11008, vocab_size=32000,
                       max_position_embeddings=131072, tie_word_embeddings=False)
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TORCHTUNE = ("pytorch/torchtune README.md, 'Memory and training speed' (Llama 3.1 8B, batch 2, packed 2048, "
             "torch.compile; configs llama3_1/8B_*_single_device.yaml); torch's peak active memory")
LLAMA_FACTORY = ("hiyouga/LLaMA-Factory wiki, 'Performance comparison' (edited 2024-04-15): Llama-2-7B, LoRA rank 8 "
                 "on all linear modules, FlashAttention-2, HF trainer; first table batch 4 x 1024 (16-bit and 4-bit), "
                 "accumulation 2; second table 4-bit, batch 1, accumulation 4, A100-40GB; VRAM as the card reports "
                 "it. LLaMA-Factory casts adapters to fp32 (src/llmtuner/model/adapter.py); transformers 4.40's loss "
                 "(hf_legacy)")
UNSLOTH = ("unsloth.ai docs, 'Unsloth Benchmarks', Llama 3.1 (8B) max. context length, Hugging Face + FA2 column "
           "(December 2024): 4-bit QLoRA rank 32 on all linear layers, batch 1, sequences padded to the length; "
           "fp32 adapters, 8-bit AdamW; transformers of that month (4.46-4.47) upcast in the loss beside the bf16 "
           "logits, which at one sequence peaks in the backward as hf_legacy does (12 bytes x vocabulary per token); "
           "the longest sequence before the card ran out of memory")


def recipe(**fields: Any) -> RecipeSpec:
    base = dict(id="calibration", description="published conditions", learning_rate=1e-4, steps=1,
                dataset="published", gradient_accumulation=1, gradient_checkpointing=True, dropout=0.0)
    return RecipeSpec(**{**base, **fields})


def llama_factory(seq: int, batch: int = 1, accumulation: int = 4, quant: str = "nf4") -> RecipeSpec:
    return recipe(method="qlora" if quant == "nf4" else "lora", quant=quant, double_quant=quant == "nf4", rank=8,
                  alpha=16, target_modules=ALL_LINEAR, sequence_length=seq, micro_batch=batch, adapter_dtype="fp32",
                  gradient_accumulation=accumulation, optimizer="adamw_torch", loss="hf_legacy")


UNSLOTH_HF = recipe(method="qlora", quant="nf4", double_quant=True, rank=32, alpha=32, target_modules=ALL_LINEAR,
                    sequence_length=2048, micro_batch=1, adapter_dtype="fp32", optimizer="adamw_8bit",
                    loss="hf_legacy")

# (label, model, recipe, published GiB (None: out of memory), compare "active" or "total", budget GiB, source)
ROWS = [
    ("torchtune LoRA, 4090", LLAMA31_8B,
     recipe(method="lora", rank=8, alpha=16, target_modules=["q_proj", "v_proj", "o_proj", *ALL_LINEAR[4:]],
            sequence_length=2048, micro_batch=2, packing=True, adapter_dtype="bf16", optimizer="adamw_torch",
            loss="chunked"), 16.2, "active", 24, TORCHTUNE),
    ("torchtune QLoRA, 4090", LLAMA31_8B,
     recipe(method="qlora", quant="nf4", double_quant=True, rank=8, alpha=16, target_modules=ALL_LINEAR,
            sequence_length=2048, micro_batch=2, packing=True, adapter_dtype="bf16", optimizer="adamw_torch",
            loss="chunked"), 7.4, "active", 24, TORCHTUNE),
    ("torchtune full, 4090", LLAMA31_8B,
     recipe(method="full", full_precision="bf16", sequence_length=2048, micro_batch=2, packing=True,
            optimizer="paged_adamw_8bit", optimizer_in_backward=True, loss="chunked"), 18.9, "active", 24, TORCHTUNE),
    ("LLaMA-Factory LoRA 4x1k", LLAMA2_7B, llama_factory(1024, 4, 2, "bf16"), 18, "total", 24, LLAMA_FACTORY),
    ("LLaMA-Factory QLoRA 4x1k", LLAMA2_7B, llama_factory(1024, 4, 2), 9, "total", 24, LLAMA_FACTORY),
    *[(f"LLaMA-Factory QLoRA {seq // 1024}k", LLAMA2_7B, llama_factory(seq), published, "total", 40, LLAMA_FACTORY)
      for seq, published in ((1024, 6), (2048, 7), (4096, 9), (8192, 12), (16384, 19), (32768, 32), (65536, None))],
]
# Longest sequence that fits a card of this many GiB, published by Unsloth for the HF + FA2 baseline.
CONTEXT_ROWS = [(budget, published) for budget, published in
                ((12, 932), (16, 2551), (24, 5789), (40, 12264), (48, 15502), (80, 28454))]


def longest_fitting(cfg: TextConfig, r: RecipeSpec, budget_gib: int) -> int:
    lo, hi = 0, cfg.max_position_embeddings
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if training_memory(cfg, count_params(cfg), r, GIB, budget_gib * GIB, mid).fits:
            lo = mid
        else:
            hi = mid - 1
    return lo


def main() -> int:
    out, bad = [], 0
    for label, cfg, r, published, compare, budget_gib, _ in ROWS:
        est = training_memory(cfg, count_params(cfg), r, GIB, int(budget_gib * GIB))
        value = est.active_peak_bytes if compare == "active" else est.total_bytes
        fits = est.total_bytes <= budget_gib * GIB
        if published is None:
            ok, err = not fits, "-"
            shown = "out of memory"
        else:
            rel = value / (published * GIB) - 1
            ok, err, shown = abs(rel) <= TOLERANCE and fits == (published <= budget_gib), f"{rel:+.1%}", f"{published}"
        bad += not ok
        out.append([label, shown, f"{value / GIB:.1f}", compare, err,
                    f"{'fits' if fits else 'does not fit'} {budget_gib} GiB", "ok" if ok else "OFF"])
    print(table(["published measurement", "GiB", "bench GiB", "compared", "error", "bench verdict", ""], out))
    out = []
    for budget_gib, published in CONTEXT_ROWS:
        longest = longest_fitting(LLAMA31_8B, UNSLOTH_HF, budget_gib)
        rel = longest / published - 1
        bad += abs(rel) > TOLERANCE
        out.append([f"HF + FA2 QLoRA, Llama 3.1 8B, {budget_gib} GB", f"{published:,}", f"{longest:,}", f"{rel:+.1%}",
                    "ok" if abs(rel) <= TOLERANCE else "OFF"])
    print()
    print(table(["published longest sequence that fits", "tokens", "bench tokens", "error", ""], out))
    print("\nsources:")
    for source in [*dict.fromkeys(row[-1] for row in ROWS), UNSLOTH]:
        print(f"  {source}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
