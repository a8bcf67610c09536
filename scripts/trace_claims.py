"""The seed fine-tune claims traced at the real size on fake tensors, beside bench's estimate.

Each row runs `bench trace`'s job (trl's SFT trainer, peft, the real shapes; fake tensors on the
CPU, so the step is the one `bench finetune --device cpu` takes: no autocast, trl's torch loss)
and writes a record of kind `trace` under the results folder. The estimate beside it is bench's
at the same recipe and device (`training_memory(..., device="cpu")`); the error is the estimate's
against the trace. A published number, where one exists, was measured on a GPU with another
program (torchtune's), so it is shown for scale, not as a target.

    .venv/bin/python scripts/trace_claims.py                     # every row, records into results/trace
    .venv/bin/python scripts/trace_claims.py --results-dir DIR llama-3.1-8b
    .venv/bin/python scripts/trace_claims.py --validate          # tiny shapes: trace against the profiler

The seed claims' rows trace the registry's recipe unchanged (a verdict takes a trace only of
the recipe the claim names). The rows of published conditions set gradient accumulation to 1
(each traced micro batch costs a full forward and backward of the real shape); with
accumulation, a step also holds its adapters' gradients across micro batches, which the
estimate's own row at accumulation 1 leaves out alike. Those rows run trl's loss, the one the
trace runs, where the publication's program ran another (transformers 4.40-4.47's, torchtune's
chunked loss): the trace answers whether the estimate misses a tensor of the step outside the
loss, whose own bytes `scripts/measure_loss_path.py` measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.config.hfconfig import TextConfig
from bench.config.registry import load_registry
from bench.config.specs import ModelSpec, RecipeSpec
from bench.jobs.runner import ResolvedModel, resolve_model
from bench.jobs.trace import trace_recipe
from bench.report.terminal import table
from bench.verdicts.memory import four_bit_variant
from bench.weights.synthetic_hf import build
from calibrate_training import ALL_LINEAR, LLAMA2_7B, LLAMA31_8B  # scripts/: the architecture facts, stated once

GIB = 2**30
# hiyouga/LLaMA-Factory wiki, 'Performance comparison': Llama-2-7B LoRA rank 8 on every linear module, batch 4 x
# 1024, fp32 adapters (its adapter.py), the HF trainer; 18 GB as the card reports it, with transformers 4.40's
# loss (hf_legacy), which trl's SFT trainer does not run: the row shows the rest of the step.
LLAMA_FACTORY_LORA = dict(method="lora", rank=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                            "gate_proj", "up_proj", "down_proj"],
                          sequence_length=1024, micro_batch=4, adapter_dtype="fp32", optimizer="adamw_torch",
                          gradient_checkpointing=True, dropout=0.0)
# pytorch/torchtune README.md, 'Memory and training speed': Llama 3.1 8B LoRA, batch 2, packed 2048, rank 8 on
# q, v, output and the MLP, bf16 adapters: 16.2 GiB of torch's peak active memory (with torchtune's chunked loss).
TORCHTUNE_LORA = dict(method="lora", rank=8, alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "gate_proj",
                                                                        "up_proj", "down_proj"],
                      sequence_length=2048, micro_batch=2, adapter_dtype="bf16", optimizer="adamw_torch",
                      gradient_checkpointing=True, dropout=0.0)
TORCHTUNE_LORA_GIB = 16.2
# The same README table, QLoRA: NF4 double-quantised base, rank 8 on every linear, bf16 adapters; 7.4 GiB.
TORCHTUNE_QLORA = {**TORCHTUNE_LORA, "method": "qlora", "quant": "nf4", "double_quant": True,
                   "target_modules": ALL_LINEAR}
TORCHTUNE_QLORA_GIB = 7.4
# LLaMA-Factory's QLoRA rows of the same wiki page (4-bit, double quantisation): 9 GB at 4 x 1024 and, batch 1 with
# accumulation 4 on an A100-40GB, 6 GB at 1,024 tokens and 9 GB at 4,096.
LLAMA_FACTORY_QLORA = {**LLAMA_FACTORY_LORA, "method": "qlora", "quant": "nf4", "double_quant": True}
# unsloth.ai 'Unsloth Benchmarks', Llama 3.1 8B, Hugging Face + FA2 column: QLoRA rank 32 on every linear, fp32
# adapters, 8-bit AdamW, batch 1; 2,551 tokens were the longest on a 16 GB card, 5,789 on a 24 GB one.
UNSLOTH_HF_QLORA = dict(method="qlora", quant="nf4", double_quant=True, rank=32, alpha=32, target_modules=ALL_LINEAR,
                        micro_batch=1, adapter_dtype="fp32", optimizer="adamw_8bit", gradient_checkpointing=True,
                        dropout=0.0)


def _shape(model_id: str, arch: TextConfig) -> ResolvedModel:
    """A model directory of this architecture (config and tokenizer), for shapes the registry does not hold."""
    spec = ModelSpec(id=model_id, display_name=model_id, license="unknown", synthetic=True, architecture=arch,
                     sources={})
    return ResolvedModel(id=model_id, architecture=arch, local_path=build(spec, with_weights=False))


def rows(registry):
    """(name, model, recipe, card, published GiB or None)."""
    lora = registry.recipe("lora-sft")
    one_step = {"gradient_accumulation": 1}
    yield ("llama-3.1-8b", _shape("llama-3.1-8b-shape", LLAMA31_8B),
           RecipeSpec(**{**lora.model_dump(), "id": "torchtune-lora-shapes", "aliases": [], **TORCHTUNE_LORA,
                         **one_step}), registry.gpu("4090"), TORCHTUNE_LORA_GIB)
    yield ("llama-3.1-8b@4096", _shape("llama-3.1-8b-shape", LLAMA31_8B),
           lora.model_copy(update={**one_step, "sequence_length": 4096}),
           registry.gpu("4090"), None)
    yield ("llama-2-7b", _shape("llama-2-7b-shape", LLAMA2_7B),
           RecipeSpec(**{**lora.model_dump(), "id": "llama-factory-lora-shapes", "aliases": [], **LLAMA_FACTORY_LORA,
                         **one_step}), registry.gpu("4090"), None)
    for model_id in ("mistral-small-22b", "mistral-3-small"):
        yield (model_id, resolve_model(registry, model_id), lora.model_copy(update=one_step), registry.gpu("4090"),
               None)
    # The seed claims of QLoRA on a 24 GB card, at the registry's recipe as the claims name it.
    for model_id in ("mistral-small-22b", "mistral-3-small", "llama-4-scout"):
        yield (f"{model_id} qlora", resolve_model(registry, model_id), registry.recipe("qlora-sft"),
               registry.gpu("4090"), None)
    # "RLHF on a single A100" for Scout: the quote fixes no precision, so its cheapest reading, DPO on a 4-bit base.
    yield ("llama-4-scout dpo+nf4", resolve_model(registry, "llama-4-scout"), four_bit_variant(registry.recipe("dpo")),
           registry.gpu("a100-80gb"), None)

    def as_published(name: str, fields: dict) -> RecipeSpec:
        return RecipeSpec(**{**lora.model_dump(), "id": name, "aliases": [], "loss": "fused_linear", **fields,
                             **one_step})

    llama8, llama7 = _shape("llama-3.1-8b-shape", LLAMA31_8B), _shape("llama-2-7b-shape", LLAMA2_7B)
    yield ("llama-3.1-8b qlora", llama8, as_published("torchtune-qlora-shapes", TORCHTUNE_QLORA), registry.gpu("4090"),
           TORCHTUNE_QLORA_GIB)
    yield ("llama-2-7b qlora", llama7, as_published("llama-factory-qlora-shapes", LLAMA_FACTORY_QLORA),
           registry.gpu("4090"), None)
    for tokens in (1024, 4096):
        yield (f"llama-2-7b qlora@{tokens}", llama7, as_published("llama-factory-qlora-shapes", {
            **LLAMA_FACTORY_QLORA, "micro_batch": 1, "sequence_length": tokens}), registry.gpu("a100-40gb"), None)
    for tokens in (2551, 5789):
        yield (f"llama-3.1-8b qlora@{tokens}", llama8, as_published("unsloth-hf-qlora-shapes", {
            **UNSLOTH_HF_QLORA, "sequence_length": tokens}), registry.gpu("4090"), None)


def validate(registry) -> int:
    """The tiny shapes of tests/test_trace.py: the trace's peak against the profiler's on a real CPU step."""
    import tempfile

    from bench.calibration.training_probe import measure_training
    from bench.scenarios.finetune_settings import FinetuneSettings
    from bench.scenarios.trace import trace_step

    arch = TextConfig(model_type="llama", hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=64, intermediate_size=512, vocab_size=1024,
                      max_position_embeddings=2048, tie_word_embeddings=False)
    path = build(ModelSpec(id="trace-validate", display_name="trace validate", license="apache-2.0", synthetic=True,
                           architecture=arch, sources={}), with_weights=False)
    out, worst = [], 0.0
    for recipe_id in ("lora-sft", "qlora-sft", "full-sft", "dpo", "reward"):
        for checkpointing in (True, False):
            recipe = registry.recipe(recipe_id).model_copy(update={
                "sequence_length": 128, "micro_batch": 2, "gradient_accumulation": 1,
                "gradient_checkpointing": checkpointing, "full_precision": "bf16"})
            settings = FinetuneSettings(model_path=str(path), recipe=recipe.model_dump(), device="cpu", steps=2,
                                        dataset="trace", adapter_dir=tempfile.mkdtemp() + "/adapter",
                                        cpu_dtype="bfloat16")
            traced = trace_step(settings)["peak_bytes"]
            measured = measure_training(arch, recipe, steps=2).active_peak_bytes
            worst = max(worst, abs(traced / measured - 1))
            out.append([recipe_id, "on" if checkpointing else "off", f"{measured / 2**20:,.2f}",
                        f"{traced / 2**20:,.2f}", f"{traced / measured - 1:+.2%}"])
    print(table(["recipe", "checkpointing", "profiler peak MiB", "traced peak MiB", "trace error"], out))
    print(f"worst {worst:.2%} (tolerance 2%)")
    return 0 if worst <= 0.02 else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="rows to run (default: all)")
    parser.add_argument("--results-dir", type=Path, default=Path("results/trace"))
    parser.add_argument("--validate", action="store_true", help="tiny shapes: the trace against the profiler")
    args = parser.parse_args(argv)
    if args.validate:
        return validate(load_registry())
    args.results_dir.mkdir(parents=True, exist_ok=True)
    registry, out = load_registry(), []
    for name, model, recipe, card, published in rows(registry):
        if args.names and name not in args.names:
            continue
        record = trace_recipe(model, recipe, card, device="cpu", steps=2, results_dir=args.results_dir,
                              timeout_s=3600)
        if record.status != "ok":
            print(f"{name}: {record.status}: {record.error}", file=sys.stderr)
            continue
        traced = record.metrics["traced_peak_bytes"].value
        estimate = record.details["estimate"]["active_peak_bytes"]
        memory = record.details["memory"]
        parts = memory["by_category"]
        out.append([name, recipe.id, f"{recipe.micro_batch} x {recipe.sequence_length}",
                    f"{traced / GIB:,.2f}", memory["peak_phase"],
                    " / ".join(f"{parts[c] / GIB:.2f}" for c in ("parameters", "gradients", "optimizer_state",
                                                                   "activations", "temporaries")),
                    f"{estimate / GIB:,.2f}", f"{estimate / traced - 1:+.1%}",
                    "-" if published is None else f"{published}", f"{card.budget_bytes / GIB:.1f}",
                    f"{memory['trace_s']:.0f}", f"{memory['rss_peak_bytes'] / GIB:.2f}", record.id])
    print(table(["model", "recipe", "batch x tokens", "traced GiB", "peak in",
                 "params / grads / optimizer / activations / temporaries GiB", "estimate GiB", "estimate error",
                 "published GiB", "card budget GiB", "trace s", "trace RSS GiB", "record"], out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
