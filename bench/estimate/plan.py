"""`bench plan`: the arithmetic answer for a model, a card and a configuration.

Pure arithmetic on registry data: no torch, no download, well under a second.
The JSON shape is a contract (design section 5); field names here are that
contract's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from bench.config.hfconfig import TextConfig
from bench.config.specs import HardwareSpec, ModelSpec, RecipeSpec
from bench.errors import UserError
from bench.estimate.gguf import GGUF_QUANTS, LLAMA_CPP_MODEL_TYPES
from bench.estimate.memory import KV_DTYPE_BYTES, InferenceMemory, inference_memory, kv_bytes_per_token
from bench.estimate.params import ParamCounts, count_params
from bench.estimate.quant import FORMATS, by_precision, weight_format
from bench.estimate.roofline import decode_tokens_per_s, roofline, train_tokens_per_s
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
    prequantized: tuple[str, ...] = ()  # quants the registry names a repository for (`variants`)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Subject:
        return cls(spec.id, spec.architecture, tuple(spec.quants), spec.extra_params, spec.proxy,
                   tuple(v.quant for v in spec.variants))

    @cached_property
    def params(self) -> ParamCounts:
        """Counted once: a plan's searches and advice ask for them at every step."""
        return count_params(self.config, self.extra_params)

    def accepts_gguf(self, quant: str) -> bool:
        """A GGUF type asked for by name applies to every architecture llama.cpp loads."""
        fmt = FORMATS.get(quant)
        return fmt is not None and fmt.gguf and self.config.model_type in LLAMA_CPP_MODEL_TYPES

    def obtainable(self, quant: str) -> bool:
        """A format only a pre-quantized repository serves (int4: AWQ/GPTQ) is there only when the
        registry names such a repository; every other format an engine makes from the 16-bit weights."""
        return not FORMATS[quant].prequantized or quant in self.prequantized

    def planned_quants(self) -> list[str]:
        """Every format quant advice weighs, most precise first: the registry's list where it can be
        obtained, and every GGUF type when llama.cpp loads the architecture (its quantizer writes any of
        them from the 16-bit weights, whatever the registry lists)."""
        gguf = GGUF_QUANTS if self.config.model_type in LLAMA_CPP_MODEL_TYPES else ()
        return by_precision(q for q in (*self.quants, *gguf) if self.obtainable(q))


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
    """The formats advice weighs, and the one the plan is for, that fit: most precise first. Counting the
    plan's own format means the advice never says "none" under a plan that fits, nor names a format less
    precise than it."""
    candidates = by_precision({*req.subject.planned_quants(), req.resolved_quant()})
    return [q for q in candidates if memory_for(req, q, context, gpu).fits]


def decode_rate(req: PlanRequest, quant: str, context: int, gpu: HardwareSpec) -> float:
    """What "fastest" means in every piece of advice: the roofline decode rate at batch 1, the format that
    reads the fewest bytes per token (weights touched and the KV cache)."""
    subject = req.subject
    return decode_tokens_per_s(subject.config, subject.params, weight_format(quant), gpu, context,
                               KV_DTYPE_BYTES[req.kv_dtype])


def fits_by_engine(req: PlanRequest, gpu: HardwareSpec, engine_quants: dict[str, tuple[str, ...]]
                   ) -> list[dict[str, Any]]:
    """For each engine, the most precise format it runs (of those advice weighs) that fits at the plan's
    context and batch: the context it leaves, the bytes to spare and its roofline decode rate.

    `engine_quants` is the engines' capability table for the card (a later stage owns it); an engine
    none of whose formats fits, or that runs none of this model's formats, has `quant` None.
    """
    context = req.resolved_context()
    planned = req.subject.planned_quants()
    rows = []
    for engine, runs in engine_quants.items():
        considered = [q for q in planned if q in runs]
        best = next((q for q in considered if memory_for(req, q, context, gpu).fits), None)
        row: dict[str, Any] = {"engine": engine, "quant": best, "fits": best is not None,
                               "considered": considered, "max_context_that_fits": 0, "headroom_bytes": None,
                               "decode_tokens_per_s": None}
        if best is not None:
            memory = memory_for(req, best, context, gpu)
            row.update(max_context_that_fits=max_context_that_fits(req, best, gpu),
                       headroom_bytes=memory.budget_bytes - memory.total_bytes,
                       decode_tokens_per_s=decode_rate(req, best, context, gpu))
        rows.append(row)
    return rows


def make_plan(req: PlanRequest, engine_quants: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """One configuration's arithmetic; with `engine_quants` (and a card, for inference) also the most
    precise format each engine fits (`fits_by_engine`), the answer to "does it fit this card?"."""
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
        "fits_by_engine": None,
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
        if fitting:  # max keeps the first of equals: the more precise of two equally fast formats
            plan["fastest_quant_that_fits"] = max(fitting, key=lambda q: decode_rate(req, q, context, gpu))
            plan["highest_precision_quant_that_fits"] = fitting[0]
        plan["notes"] += _unobtainable_notes(subject)
        if engine_quants is not None:
            plan["fits_by_engine"] = fits_by_engine(req, gpu, engine_quants)
            plan["notes"] += [n for n in _engine_notes(subject, plan["fits_by_engine"]) if n not in plan["notes"]]
    return plan


def _unobtainable_notes(subject: Subject) -> list[str]:
    return [f"{q} is left out of the advice: it needs a pre-quantized repository and none is named for "
            f"{subject.id} (--quant {q} plans it anyway)" for q in subject.quants if not subject.obtainable(q)]


def _engine_notes(subject: Subject, rows: list[dict[str, Any]]) -> list[str]:
    """What the per-engine answer leaves out: a GGUF answer counts the text model's tensors only."""
    return _text_model_only_notes(subject) if any(r["quant"] and FORMATS[r["quant"]].gguf for r in rows) else []


def _gguf_notes(subject: Subject, quant: str) -> list[str]:
    if not weight_format(quant).gguf:
        return []
    return [f"{quant}: weights_bytes is the tensor data of the GGUF file llama.cpp's quantizer writes "
            "(per-tensor types of llama-quantize; the file's header and vocabulary add a few MB)",
            *_text_model_only_notes(subject)]


def _text_model_only_notes(subject: Subject) -> list[str]:
    if not subject.extra_params:
        return []
    return [f"a GGUF holds the text model only; the {subject.extra_params:,} parameters outside it "
            "(vision tower, projector) go in a separate mmproj file, not counted"]


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
