"""Training memory measured term by term on the CPU, with the trainer `bench finetune` runs.

The estimator (`bench.estimate.training`) is arithmetic; this module is what holds it to
account. It builds a model of a given architecture with random weights (the code path of
`bench finetune --weights synthetic`), hands it to the same trl trainer that
`bench.scenarios.finetune` builds, trains a few steps on sequences of exactly the asked
length, and reads torch's allocator through the profiler's memory events (every tensor
allocation and free, with the running total), so the peak is tensor memory, not RSS.

Terms, measured the way the estimate names them:

* weights: the frozen parameters and buffers the model holds (for full fine-tuning, the
  trained parameters themselves);
* trainable: adapter parameters (none for full fine-tuning), their gradients (read just
  before the optimizer step) and the optimizer state after the last step;
* transient: the step's peak above everything resident when the step began, that is
  activations, logits and the loss's buffers, gradients and the optimizer's temporaries;
* active peak: the largest total of live tensors during the measured steps.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from bench.calibration.profiler import cpu_allocations
from bench.config.hfconfig import TextConfig
from bench.config.specs import ModelSpec, RecipeSpec
from bench.scenarios.finetune import StepLog, load_base, lora_config, make_trainer, quant_state_tensors
from bench.scenarios.finetune_settings import FinetuneSettings
from bench.scenarios.trace import trace_rows
from bench.weights.synthetic_hf import build


@dataclass(frozen=True)
class MeasuredTraining:
    weights_bytes: int
    trainable_bytes: int  # trainable parameters (adapters; 0 for full), gradients, optimizer state
    transient_bytes: int  # peak of a step above what was resident when it began
    active_peak_bytes: int
    steps: int
    tokens_per_step: int


def _storage_bytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is not None and t.device.type == "cpu":
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def measure_training(arch: TextConfig, recipe: RecipeSpec, *, steps: int = 2, seed: int = 0) -> MeasuredTraining:
    """Train `steps` optimizer steps of `recipe` on a random model of `arch` and measure every term.

    The first step is a warm-up (the optimizer makes its state there); the transient and the
    peak are taken over the remaining steps, the steady state a longer run repeats.
    """
    spec = ModelSpec(id="probe", display_name="probe", license="apache-2.0", synthetic=True, architecture=arch,
                     sources={})
    model_dir = build(spec, with_weights=False)
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as work:
        settings = FinetuneSettings(model_path=str(model_dir), recipe=recipe.model_dump(), device="cpu",
                                    steps=steps, dataset="probe", adapter_dir=str(Path(work) / "adapter"),
                                    seed=seed, synthetic_weights=True, cpu_dtype="bfloat16")
        reward = recipe.method == "reward"
        tokenizer, model = load_base(settings, reward)
        peft_config = None if recipe.method == "full" else lora_config(settings.recipe, model, reward)[0]
        # The rows `bench trace` feeds its trainer: every micro batch full length (DPO's as text, which trl 1.16's
        # DPO trainer takes only), so a trace and this measurement train on the same batches.
        rows = trace_rows(recipe.sequence_length, recipe.micro_batch * recipe.gradient_accumulation * steps,
                          min(arch.vocab_size, len(tokenizer)), recipe.method, tokenizer)
        log = StepLog()
        trainer = make_trainer(settings, model, tokenizer, rows, peft_config, log)
        probe = _Probe(trainer)
        trainer.add_callback(probe.callback)
        trainer.train()
        return probe.result(recipe)


class _Probe:
    """Starts the profiler after the warm-up step and reads resident tensors at the step boundaries."""

    def __init__(self, trainer: Any) -> None:
        from transformers import TrainerCallback

        self.trainer, self.prof, self.grad_bytes, self.resident_at_start = trainer, None, 0, 0
        probe = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if state.global_step == 1 and probe.prof is None:  # after the warm-up step
                    probe.resident_at_start = probe.resident()
                    probe.prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                    probe.prof.__enter__()

            def on_pre_optimizer_step(self, args, state, control, **kw):
                params = [p for p in probe.trainer.model.parameters() if p.requires_grad]
                probe.grad_bytes = _storage_bytes(p.grad for p in params)

            def on_train_end(self, args, state, control, **kw):
                if probe.prof is not None:
                    probe.prof.__exit__(None, None, None)

        self.callback = Callback()

    def _optimizer_tensors(self) -> list[torch.Tensor]:
        return [v for state in self.trainer.optimizer.state.values() for v in state.values()
                if isinstance(v, torch.Tensor)]

    def resident(self) -> int:
        model = self.trainer.model
        return _storage_bytes([*model.parameters(), *model.buffers(), *quant_state_tensors(model),
                               *self._optimizer_tensors()])

    def result(self, recipe: RecipeSpec) -> MeasuredTraining:
        model = self.trainer.model
        trainable = [p for p in model.parameters() if p.requires_grad]
        frozen = [p for p in model.parameters() if not p.requires_grad]
        full = recipe.method == "full"
        weights = _storage_bytes([*(trainable if full else frozen), *model.buffers(), *quant_state_tensors(model)])
        optimizer = _storage_bytes(self._optimizer_tensors())
        adapters = 0 if full else _storage_bytes(trainable)
        totals = [total for _, total in cpu_allocations(self.prof)[0]]
        transient = max(totals, default=0)
        pairs = 2 if recipe.method in ("dpo", "reward") else 1
        return MeasuredTraining(
            weights_bytes=weights, trainable_bytes=adapters + self.grad_bytes + optimizer,
            transient_bytes=transient, active_peak_bytes=self.resident_at_start + transient,
            steps=self.trainer.state.global_step,
            tokens_per_step=recipe.micro_batch * recipe.sequence_length * pairs)
