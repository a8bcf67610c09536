"""Training memory measured on this CPU at real shape against the estimate, term by term.

Random weights of a real architecture, a few optimizer steps with the trl trainer that
`bench finetune` builds, bf16 as on a GPU; tensor memory from torch's allocator (the
profiler's memory events), not RSS. Prints one table per shape and exits 1 when a row
is more than 10% off. Kept to short sequences so a run stays within a few GiB.

    .venv/bin/python scripts/measure_training_cpu.py            # every shape below
    .venv/bin/python scripts/measure_training_cpu.py llama-1b   # one
"""

from __future__ import annotations

import sys

from bench.estimate.params import count_params
from bench.estimate.training import training_memory
from bench.config.hfconfig import TextConfig
from bench.report.terminal import table
from bench.config.registry import load_registry
from bench.calibration.training_probe import measure_training

# Llama 3.2 1B's shape (config.json of meta-llama/Llama-3.2-1B), a small Mixtral-class MoE,
# and SmolLM2-135M's shape for the full fine-tune (16 bytes a parameter of a 1B model would
# not fit beside the others' work on a shared 2-core machine).
SHAPES = {
    "llama-1b": dict(model_type="llama", hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=64, intermediate_size=8192, vocab_size=128256,
                     max_position_embeddings=131072, tie_word_embeddings=True),
    "moe-1b": dict(model_type="mixtral", hidden_size=1024, num_hidden_layers=8, num_attention_heads=16,
                   num_key_value_heads=4, head_dim=64, intermediate_size=2048, num_local_experts=8,
                   num_experts_per_tok=2, vocab_size=32000, max_position_embeddings=32768,
                   tie_word_embeddings=False),
    "llama-135m": dict(model_type="llama", hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                       num_key_value_heads=3, head_dim=64, intermediate_size=1536, vocab_size=49152,
                       max_position_embeddings=8192, tie_word_embeddings=True),
}
RUNS = [  # shape, recipe, overrides
    ("llama-1b", "lora-sft", {"gradient_checkpointing": True}),
    ("llama-1b", "lora-sft", {"gradient_checkpointing": False}),
    ("moe-1b", "lora-sft", {"gradient_checkpointing": False}),
    ("llama-135m", "full-sft", {"gradient_checkpointing": True}),
]
SEQUENCE, BATCH, STEPS, TOLERANCE = 256, 1, 2, 0.10


def main(names: list[str]) -> int:
    registry, worst = load_registry(), 0.0
    for shape, recipe_id, overrides in RUNS:
        if names and shape not in names:
            continue
        arch = TextConfig(**SHAPES[shape])
        recipe = registry.recipe(recipe_id).model_copy(update={
            "sequence_length": SEQUENCE, "micro_batch": BATCH, "gradient_accumulation": 1,
            "full_precision": "bf16", **overrides})
        measured = measure_training(arch, recipe, steps=STEPS)
        est = training_memory(arch, count_params(arch), recipe, 0, None, device="cpu")
        rows = [("weights", measured.weights_bytes, est.weights_bytes),
                ("trainable state", measured.trainable_bytes, est.trainable_bytes),
                ("step transient", measured.transient_bytes, est.active_peak_bytes - est.weights_bytes
                 - est.trainable_bytes + est.gradient_bytes),  # above what a step begins with (no gradients)
                ("active peak", measured.active_peak_bytes, est.active_peak_bytes)]
        print(f"\n{shape} {recipe_id} {overrides} seq {SEQUENCE} batch {BATCH} ({count_params(arch).total / 1e9:.2f}B "
              f"params; estimate: activations {est.activations_bytes / 2**20:.0f} MiB, "
              f"logits {est.logits_bytes / 2**20:.0f} MiB)")
        out = []
        for name, m, e in rows:
            err = e / m - 1 if m else 0.0
            worst = max(worst, abs(err))
            out.append([name, f"{m / 2**20:,.1f}", f"{e / 2**20:,.1f}", f"{err:+.1%}"])
        print(table(["term", "measured MiB", "estimated MiB", "error"], out))
    print(f"\nworst error {worst:.1%} (tolerance {TOLERANCE:.0%})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
