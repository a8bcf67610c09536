"""`bench plan`: the arithmetic answer for a model, a card and a configuration.

Pure arithmetic on registry data: no torch, no download, well under a second.
The JSON shape is a contract (design section 5); field names here are that
contract's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.config.hfconfig import TextConfig
from bench.config.specs import HardwareSpec, ModelSpec, RecipeSpec
from bench.errors import UserError
from bench.estimate.gguf import LLAMA_CPP_MODEL_TYPES
from bench.estimate.memory import KV_DTYPE_BYTES, InferenceMemory, inference_memory, kv_bytes_per_token
from bench.estimate.params import ParamCounts, count_params
from bench.estimate.quant import FORMATS, weight_format
from bench.estimate.roofline import roofline, train_tokens_per_s
from bench.estimate.training import TrainingMemory, training_memory

DEFAULT_CONTEXT = 4096
DEFAULT_BATCH = 1


@dataclass(frozen=True)
class Subject:
    """What a plan is about: a registry model or a bare config.json."""

    id: str
    config: TextConfig
    quants: tuple[str, ...]
    extra_params: int = 0
    proxy: str | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Subject:
        return cls(spec.id, spec.architecture, tuple(spec.quants), spec.extra_params, spec.proxy)

    @property
    def params(self) -> ParamCounts:
        return count_params(self.config, self.extra_params)

    def accepts_gguf(self, quant: str) -> bool:
        """A GGUF type asked for by name applies to every architecture llama.cpp loads."""
        fmt = FORMATS.get(quant)
        return fmt is not None and fmt.gguf and self.config.model_type in LLAMA_CPP_MODEL_TYPES


@dataclass(frozen=True)
class PlanRequest:
    subject: Subject
    gpu: HardwareSpec | None = None
    quant: str | None = None
    context: int | None = None
    batch: int | None = None  # None: the recipe's micro batch, or 1 for inference
    recipe: RecipeSpec | None = None
    kv_dtype: str = "auto"
    notes: list[str] = field(default_factory=list)

    def resolved_quant(self) -> str:
        if self.recipe is not None:
            if self.quant is not None and self.quant != self.recipe.quant:
                raise UserError(f"--quant {self.quant} conflicts with recipe {self.recipe.id} ({self.recipe.quant})")
            return self.recipe.quant
        quant = self.quant or self.subject.quants[0]
        if self.subject.accepts_gguf(quant):
            return quant
        if quant not in self.subject.quants:
            raise UserError(f"quant {quant!r} does not apply to {self.subject.id}; applies: "
                            f"{', '.join(self.subject.quants)}")
        return quant

    def resolved_batch(self) -> int:
        if self.batch is not None:
            return self.batch
        return self.recipe.micro_batch if self.recipe is not None else DEFAULT_BATCH

    def resolved_context(self) -> int:
        if self.recipe is not None and self.context is None:
            return self.recipe.sequence_length
        context = self.context or min(DEFAULT_CONTEXT, self.subject.config.max_position_embeddings)
        if context > self.subject.config.max_position_embeddings:
            raise UserError(f"context {context} exceeds {self.subject.id}'s maximum of "
                            f"{self.subject.config.max_position_embeddings} tokens")
        return context


def _overhead(gpu: HardwareSpec | None) -> int:
    # Without a card, assume one discrete GPU's runtime overhead (1 GiB).
    per_device = gpu.runtime_overhead_gib if gpu else 1.0
    return int(per_device * 2**30 * (gpu.device_count if gpu else 1))


def memory_for(req: PlanRequest, quant: str, context: int, gpu: HardwareSpec | None, batch: int | None = None
               ) -> InferenceMemory | TrainingMemory:
    subject, budget = req.subject, (gpu.budget_bytes if gpu else None)
    batch = batch or req.resolved_batch()
    if req.recipe is not None:
        return training_memory(subject.config, subject.params, req.recipe, _overhead(gpu), budget, context, batch)
    return inference_memory(subject.config, subject.params, weight_format(quant), context, batch,
                            _overhead(gpu), budget, KV_DTYPE_BYTES[req.kv_dtype])


def max_context_that_fits(req: PlanRequest, quant: str, gpu: HardwareSpec) -> int:
    """Largest context (sequence length, for training) whose estimate fits; 0 if none does."""
    lo, hi = 0, req.subject.config.max_position_embeddings
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if memory_for(req, quant, mid, gpu).fits:
            lo = mid
        else:
            hi = mid - 1
    return lo


def max_micro_batch_that_fits(req: PlanRequest, quant: str, context: int, gpu: HardwareSpec,
                              ceiling: int = 4096) -> int:
    """Largest micro batch whose training estimate fits at `context` tokens; 0 if not even one does."""
    lo, hi = 0, ceiling
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if memory_for(req, quant, context, gpu, mid).fits:
            lo = mid
        else:
            hi = mid - 1
    return lo


def quants_that_fit(req: PlanRequest, context: int, gpu: HardwareSpec) -> list[str]:
    return [q for q in req.subject.quants if memory_for(req, q, context, gpu).fits]


def make_plan(req: PlanRequest) -> dict[str, Any]:
    subject, gpu = req.subject, req.gpu
    quant, context, batch = req.resolved_quant(), req.resolved_context(), req.resolved_batch()
    params = subject.params
    memory = memory_for(req, quant, context, gpu)

    plan: dict[str, Any] = {
        "model": subject.id,
        "proxy": subject.proxy,
        "gpu": gpu.id if gpu else None,
        "quant": quant,
        "context": context,
        "batch": batch,
        "finetune": req.recipe.id if req.recipe else None,
        "params": {"total": params.total, "active": params.active, "text": params.text,
                   "by_part": _params_by_part(params)},
        "memory": _memory_fields(memory, kv_bytes_per_token(subject.config, KV_DTYPE_BYTES[req.kv_dtype])),
        "fits": memory.fits,
        "max_context_that_fits": None,
        "max_micro_batch_that_fits": None,
        "fastest_quant_that_fits": None,
        "highest_precision_quant_that_fits": None,
        "roofline": None,
        "notes": list(req.notes) + _gguf_notes(subject, quant),
    }
    if gpu is None:
        return plan
    plan["max_context_that_fits"] = max_context_that_fits(req, quant, gpu)
    rl = roofline(subject.config, params, weight_format(quant), gpu, context, batch,
                  KV_DTYPE_BYTES[req.kv_dtype])
    plan["roofline"] = {
        "decode_tokens_per_s": rl.decode_tokens_per_s,
        "prefill_tokens_per_s": rl.prefill_tokens_per_s,
        "throughput_tokens_per_s": rl.throughput_tokens_per_s,
        "throughput_batch": batch,
    }
    if req.recipe is not None:
        plan["max_micro_batch_that_fits"] = max_micro_batch_that_fits(req, quant, context, gpu)
        plan["roofline"]["train_tokens_per_s"] = train_tokens_per_s(
            subject.config, params, gpu, context, req.recipe.method == "full", req.recipe.gradient_checkpointing)
    else:
        fitting = quants_that_fit(req, context, gpu)
        if fitting:
            speed = {q: roofline(subject.config, params, weight_format(q), gpu, context, batch)
                     .decode_tokens_per_s for q in fitting}
            plan["fastest_quant_that_fits"] = max(fitting, key=lambda q: speed[q])
            plan["highest_precision_quant_that_fits"] = max(
                fitting, key=lambda q: weight_format(q).bits_per_weight)
    return plan


def _gguf_notes(subject: Subject, quant: str) -> list[str]:
    if not weight_format(quant).gguf:
        return []
    notes = [f"{quant}: weights_bytes is the tensor data of the GGUF file llama.cpp's quantizer writes "
             "(per-tensor types of llama-quantize; the file's header and vocabulary add a few MB)"]
    if subject.extra_params:
        notes.append(f"the GGUF holds the text model only; the {subject.extra_params:,} parameters outside it "
                     "(vision tower, projector) go in a separate mmproj file, not counted")
    return notes


def _params_by_part(p: ParamCounts) -> dict[str, int]:
    return {"embedding": p.embedding, "lm_head": p.lm_head, "attention": p.attention,
            "dense_mlp": p.dense_mlp, "experts": p.experts, "router": p.router,
            "norms": p.norms, "biases": p.biases, "extra": p.extra}


def _memory_fields(m: InferenceMemory | TrainingMemory, kv_per_token: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "weights_bytes": m.weights_bytes,
        "weights_floor_bytes": m.weights_floor_bytes,
        "kv_cache_bytes": getattr(m, "kv_cache_bytes", 0),
        "kv_bytes_per_token": kv_per_token,
        "activations_bytes": m.activations_bytes,
        "logits_bytes": m.logits_bytes,
        "overhead_bytes": m.overhead_bytes,
        "total_bytes": m.total_bytes,
        "lower_bound_bytes": m.lower_bound_bytes,
        "budget_bytes": m.budget_bytes,
    }
    if isinstance(m, TrainingMemory):
        fields.update(trainable_params=m.trainable_params, trainable_bytes=m.trainable_bytes,
                      tokens_per_step=m.tokens_per_step, micro_batch=m.micro_batch,
                      recompute_bytes=m.recompute_bytes, optimizer_step_bytes=m.optimizer_step_bytes,
                      active_peak_bytes=m.active_peak_bytes, outside_allocator_bytes=m.outside_allocator_bytes,
                      beyond_allocator_bytes=m.beyond_allocator_bytes)
    return fields
