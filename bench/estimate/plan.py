"""`bench plan`: the arithmetic answer for a model, a card and a configuration.

Pure arithmetic on registry data: no torch, no download, well under a second.
The JSON shape is a contract (design section 5); field names here are that
contract's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bench.config.hfconfig import TextConfig, from_hf_dict
from bench.config.specs import HardwareSpec, ModelSpec, RecipeSpec
from bench.errors import UserError
from bench.estimate.gguf import planned_gguf_quants
from bench.estimate.memory import (
    DEFAULT_KV_ENGINE,
    KV_DTYPE_BYTES,
    KV_ENGINES,
    InferenceMemory,
    inference_memory,
    kv_bytes_per_token,
)
from bench.estimate.params import ParamCounts, count_params
from bench.estimate.quant import FORMATS, by_precision, weight_format
from bench.estimate.roofline import decode_tokens_per_s, roofline, train_tokens_per_s
from bench.estimate.training import TrainingMemory, training_memory

if TYPE_CHECKING:  # imported where a Hub or config.json subject needs them: a registry plan never does
    from bench.estimate.checkpoint import CheckpointWeights
    from bench.estimate.vision import VisionCounts

DEFAULT_CONTEXT = 4096
DEFAULT_BATCH = 1
LINE_STEPS = 8  # `largest_that_fits`: more than the pieces an estimate has, then a bisection
# The formats a bare config.json is planned in: it names no pre-quantized repository, and --quant may pick any.
HF_CONFIG_QUANTS = ("bf16", "fp16", "fp8", "int8", "nf4", "int4")
# Bounds on what a long-lived process keeps: subjects made from registry entries (a registry holds a dozen or
# two), and each subject's estimates (`bench plan --claims` makes 942 over 7 models); past a bound that
# memory starts over.
SUBJECTS_REMEMBERED = 64
ESTIMATES_REMEMBERED = 2048


@dataclass(frozen=True)
class Subject:
    """What a plan is about: a registry model or a bare config.json."""

    id: str
    config: TextConfig
    quants: tuple[str, ...]
    extra_params: int = 0  # vision tower and projector, counted in the total and in weight memory
    proxy: str | None = None
    prequantized: tuple[str, ...] = ()  # quants the registry names a repository for (`variants`)
    dropped_params: int = 0  # vision tower and projector the checkpoint holds but --text-only leaves out
    vision: VisionCounts | None = None  # tower and projector apart, when counted from a config.json
    source: dict[str, str] | None = None  # where the config came from: a Hub repo@commit or a local folder
    checkpoint: CheckpointWeights | None = None  # the checkpoint's own tensors, from its safetensors headers
    checkpoint_note: str | None = None  # why a Hub or folder subject has no checkpoint summary
    # An architecture bench has no arithmetic for: its parameters as transformers counted them (`counted_by`
    # says how), with `config` holding only its standard attention fields (for the KV cache and activations).
    counted_params: ParamCounts | None = None
    counted_by: str | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, text_only: bool = False) -> Subject:
        """One subject per registry entry (and --text-only): every claim on a model plans the same subject, so
        its estimates (`estimates`) are made once for all of them."""
        key = (cls, id(spec), text_only)
        made = _SPEC_SUBJECTS.get(key)
        if made is not None and made[0] is spec:
            return made[1]
        counted, dropped = (0, spec.extra_params) if text_only else (spec.extra_params, 0)
        subject = cls(spec.id, spec.architecture, tuple(spec.quants), counted, spec.proxy,
                      tuple(v.quant for v in spec.variants), dropped)
        if len(_SPEC_SUBJECTS) >= SUBJECTS_REMEMBERED:
            _SPEC_SUBJECTS.clear()
        _SPEC_SUBJECTS[key] = (spec, subject)  # the entry holds its spec: no other object takes its id meanwhile
        return subject

    @classmethod
    def from_hf_config(cls, raw: dict[str, Any], origin: str, text_only: bool = False) -> Subject:
        """A parsed config.json (a user's file or a Hub repository's): its text model, plus the vision tower
        and projector of a multimodal checkpoint, which an engine loading the checkpoint whole holds too."""
        from bench.estimate.vision import count_vision

        config = from_hf_dict(raw, origin)
        vision = count_vision(raw, origin)
        total = vision.total if vision else 0
        counted, dropped = (0, total) if text_only else (total, 0)
        return cls(origin, config, HF_CONFIG_QUANTS, counted, dropped_params=dropped, vision=vision)

    @property
    def vision_params(self) -> int:
        """The checkpoint's vision tower and projector, counted or not."""
        return self.extra_params + self.dropped_params

    def checkpoint_bytes(self, quant: str) -> int | None:
        """The checkpoint's real bytes, when `quant` is the format it is stored in and the plan counts
        everything it holds (--text-only leaves a vision tower out that the file's bytes include)."""
        stored = self.stored_checkpoint(quant)
        return stored.total_bytes if stored is not None else None

    def stored_checkpoint(self, quant: str) -> CheckpointWeights | None:
        """The checkpoint, when the plan holds the weights as it stores them (see `checkpoint_bytes`)."""
        if self.checkpoint is None or self.checkpoint.quant != quant or self.dropped_params:
            return None
        return self.checkpoint

    @cached_property
    def params(self) -> ParamCounts:
        """Counted once: a plan's searches and advice ask for them at every step."""
        if self.counted_params is not None:
            return self.counted_params
        return count_params(self.config, self.extra_params)

    @cached_property
    def estimates(self) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """The subject's estimates made so far (`memory_for`, `decode_rate`): the plans of one command ask for
        the same configuration again and again (each candidate quant's plan weighs every other quant, and
        several claims share a model and a card), and a subject is immutable."""
        return {}

    @property
    def llama_cpp_loads(self) -> bool:
        """Whether llama.cpp loads the architecture (never one bench knows only by transformers' count)."""
        return self.counted_by is None and bool(planned_gguf_quants(self.config.model_type))

    def accepts_gguf(self, quant: str) -> bool:
        """A GGUF type asked for by name applies to every architecture llama.cpp loads."""
        fmt = FORMATS.get(quant)
        return fmt is not None and fmt.gguf and self.llama_cpp_loads

    def obtainable(self, quant: str) -> bool:
        """A format only a pre-quantized repository serves (int4: AWQ/GPTQ) is there only when the
        registry names such a repository; every other format an engine makes from the 16-bit weights."""
        return not FORMATS[quant].prequantized or quant in self.prequantized

    def planned_quants(self) -> list[str]:
        """Every format quant advice weighs, most precise first: the registry's list where it can be
        obtained, and every GGUF type when llama.cpp loads the architecture (its quantizer writes any of
        them from the 16-bit weights, whatever the registry lists)."""
        gguf = planned_gguf_quants(self.config.model_type) if self.counted_by is None else ()
        return by_precision(q for q in (*self.quants, *gguf) if self.obtainable(q))


_SPEC_SUBJECTS: dict[tuple[type[Subject], int, bool], tuple[ModelSpec, Subject]] = {}


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
    kv_engine: str | None = None  # whose KV cache rules; None: the engine of the format (llama.cpp for GGUF, vLLM)

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
    batch = batch or req.resolved_batch()
    return _remembered(req, ("memory", quant, context, batch, req.kv_dtype, req.kv_engine), gpu,
                       lambda: _memory_for(req, quant, context, gpu, batch))


def _remembered(req: PlanRequest, key: tuple[Any, ...], gpu: HardwareSpec | None, make: Callable[[], Any]) -> Any:
    """`make()`, remembered among the subject's estimates under `key` with the card and recipe it is for (by
    identity: specs are immutable, and each entry holds its own, so no other object takes their ids). An
    estimate is a frozen dataclass or a number: sharing it is safe."""
    estimates = req.subject.estimates
    key = (*key, id(gpu), id(req.recipe))
    hit = estimates.get(key)
    if hit is not None and hit[0] is gpu and hit[1] is req.recipe:
        return hit[2]
    if len(estimates) >= ESTIMATES_REMEMBERED:
        estimates.clear()
    value = make()
    estimates[key] = (gpu, req.recipe, value)
    return value


def _memory_for(req: PlanRequest, quant: str, context: int, gpu: HardwareSpec | None, batch: int
                ) -> InferenceMemory | TrainingMemory:
    subject, budget = req.subject, (gpu.budget_bytes if gpu else None)
    if req.recipe is not None:
        return training_memory(subject.config, subject.params, req.recipe, _overhead(gpu), budget, context, batch)
    memory = inference_memory(subject.config, subject.params, weight_format(quant), context, batch,
                              _overhead(gpu), budget, KV_DTYPE_BYTES[req.kv_dtype], req.kv_engine)
    stored = subject.checkpoint_bytes(quant)
    return memory if stored is None else replace(memory, weights_bytes=stored, weights_floor_bytes=stored)


def max_context_that_fits(req: PlanRequest, quant: str, gpu: HardwareSpec) -> int:
    """Largest context (sequence length, for training) whose estimate fits; 0 if none does."""
    return largest_that_fits(lambda n: memory_for(req, quant, n, gpu), req.subject.config.max_position_embeddings)


def max_micro_batch_that_fits(req: PlanRequest, quant: str, context: int, gpu: HardwareSpec,
                              ceiling: int = 4096) -> int:
    """Largest micro batch whose training estimate fits at `context` tokens; 0 if not even one does."""
    return largest_that_fits(lambda n: memory_for(req, quant, context, gpu, n), ceiling)


def largest_that_fits(memory_at: Callable[[int], InferenceMemory | TrainingMemory], top: int) -> int:
    """Largest n in 1..top whose estimate `memory_at(n)` fits; 0 if none does. The estimate must grow with n.

    Memory is piecewise linear in the context and the batch: weights are constant, the KV cache, activations
    and logits grow linearly until a sliding or chunked window, the prefill chunk or the loss's tile caps a
    term. A step estimates at a point and its neighbour, which gives the slope of the piece there, and goes
    to where that line meets the budget: exact when the answer lies on the same piece, otherwise a point on
    a later one. The answer is bracketed by real estimates, one that fits and the next that does not, so it
    is the one a bisection gives; should the lines not close in, a bisection finishes. A few estimates
    instead of the twenty a bisection over 131,072 tokens needs: `bench plan --claims` runs hundreds of searches.
    """
    lo, hi = 0, top + 1  # n <= lo fits (0 by convention), n >= hi does not (top + 1 by convention)
    x = top
    for _ in range(LINE_STEPS):
        if hi - lo <= 1:
            return lo
        x = min(max(x, lo + 1), hi - 1)
        at_x = memory_at(x)
        lo, hi = (x, hi) if at_x.fits else (lo, x)
        if hi - lo <= 1:
            return lo
        y = x + 1 if at_x.fits else x - 1  # inside the bracket: the slope of the piece at x
        at_y = memory_at(y)
        lo, hi = (y, hi) if at_y.fits else (lo, y)
        slope = abs(at_x.total_bytes - at_y.total_bytes)
        if slope:
            x += (at_x.budget_bytes - at_x.total_bytes) // slope  # the last n on the line within the budget
        else:  # a flat piece (a constant term rules): the far end of the bracket
            x = hi - 1 if at_x.fits else lo + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if memory_at(mid).fits else (lo, mid)
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
    return _remembered(req, ("decode", quant, context, req.kv_dtype), gpu, lambda: decode_tokens_per_s(
        subject.config, subject.params, weight_format(quant), gpu, context, KV_DTYPE_BYTES[req.kv_dtype],
        subject.stored_checkpoint(quant)))


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
        # Each engine's rows follow that engine's KV cache rules (memory.kv_slots_held).
        by_engine = replace(req, kv_engine=engine if engine in KV_ENGINES else None)
        considered = [q for q in planned if q in runs]
        best = next((q for q in considered if memory_for(by_engine, q, context, gpu).fits), None)
        row: dict[str, Any] = {"engine": engine, "quant": best, "fits": best is not None,
                               "considered": considered, "max_context_that_fits": 0, "headroom_bytes": None,
                               "decode_tokens_per_s": None}
        if best is not None:
            memory = memory_for(by_engine, best, context, gpu)
            row.update(max_context_that_fits=max_context_that_fits(by_engine, best, gpu),
                       headroom_bytes=memory.budget_bytes - memory.total_bytes,
                       decode_tokens_per_s=decode_rate(by_engine, best, context, gpu))
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
                   "by_part": _params_by_part(params), "vision": _vision_fields(subject, quant)},
        "memory": _memory_fields(memory, kv_bytes_per_token(subject.config, KV_DTYPE_BYTES[req.kv_dtype],
                                                            getattr(memory, "kv_engine", DEFAULT_KV_ENGINE))),
        "fits": memory.fits,
        "max_context_that_fits": None,
        "max_micro_batch_that_fits": None,
        "fastest_quant_that_fits": None,
        "highest_precision_quant_that_fits": None,
        "roofline": None,
        "fits_by_engine": None,
        "notes": list(req.notes) + _vision_notes(subject, quant) + _gguf_notes(subject, quant),
    }
    checkpoint_fields, checkpoint_notes = _checkpoint_fields(subject, quant, req.recipe is None)
    plan.update(checkpoint_fields)
    plan["notes"] += checkpoint_notes
    if gpu is None:
        return plan
    plan["max_context_that_fits"] = max_context_that_fits(req, quant, gpu)
    rl = roofline(subject.config, params, weight_format(quant), gpu, context, batch,
                  KV_DTYPE_BYTES[req.kv_dtype], subject.stored_checkpoint(quant))
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


def _checkpoint_fields(subject: Subject, quant: str, inference: bool) -> tuple[dict[str, Any], list[str]]:
    """Where a Hub or folder subject's config came from and what its checkpoint holds (`source`,
    `checkpoint`, `params_check`: additive to the contract), with notes on how the weights figure was
    made and on any disagreement between the checkpoint's count and the architecture's."""
    fields: dict[str, Any] = {"source": subject.source, "checkpoint": None, "params_check": None,
                              "params_counted_by": subject.counted_by}
    ckpt, notes = subject.checkpoint, []
    if subject.counted_by:
        cfg = subject.config
        notes.append(f"parameters {subject.counted_by} (bench has no arithmetic for this architecture); the KV "
                     f"cache assumes full attention in all {cfg.num_hidden_layers} layers, {cfg.kv_heads} KV heads "
                     f"of {cfg.head_size}")
    if ckpt is None:
        if subject.checkpoint_note:
            notes.append(f"{subject.checkpoint_note}; the weights figure is the architecture's arithmetic")
        return fields, notes
    from bench.estimate.checkpoint import cross_check

    stored = subject.checkpoint_bytes(quant) is not None and inference
    fields["checkpoint"] = {**ckpt.to_dict(), "weights_from_checkpoint": stored}
    check = cross_check(ckpt, subject.params.total + subject.dropped_params)
    fields["params_check"] = check
    if stored:
        notes.append(f"weights_bytes is the checkpoint's own: {ckpt.total_bytes:,} bytes of tensors in "
                     f"{ckpt.files} safetensors file(s), stored as {ckpt.format}; the roofline reads its bytes too")
    else:
        notes.append(f"the checkpoint is stored as {ckpt.format} ({ckpt.total_bytes:,} bytes); the {quant} "
                     "weights figure is the architecture's arithmetic")
    if not check["matches"]:
        notes.append(f"parameter counts disagree: the checkpoint holds {check['checkpoint']:,} parameters, the "
                     f"architecture's arithmetic counts {check['architecture']:,} ({check['difference']:+,})")
    return fields, notes


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
    if not subject.vision_params:
        return []
    return [f"a GGUF holds the text model only: llama.cpp keeps the vision tower and projector "
            f"({_vision_size(subject)}) in a separate mmproj file, which weights_bytes does not count"]


def _vision_counted(subject: Subject, quant: str) -> bool:
    """Whether weights_bytes holds the vision tower and projector: not under --text-only, nor in a GGUF file."""
    return bool(subject.extra_params) and not weight_format(quant).gguf


def _vision_fields(subject: Subject, quant: str) -> dict[str, Any] | None:
    """The checkpoint's vision tower and projector, and whether this plan counts them; None for a text model."""
    if not subject.vision_params:
        return None
    vision = subject.vision
    return {"params": subject.vision_params, "tower": vision.tower if vision else None,
            "projector": vision.projector if vision else None, "counted": _vision_counted(subject, quant)}


def _vision_notes(subject: Subject, quant: str) -> list[str]:
    """Say plainly what happened to the image side (a GGUF's own note says it for llama.cpp)."""
    if not subject.vision_params or weight_format(quant).gguf:
        return []
    if subject.dropped_params:
        return [f"--text-only: the text model alone; the checkpoint's vision tower and projector "
                f"({_vision_size(subject)}) are left out, though an engine loading the whole checkpoint "
                "(vLLM, transformers) holds them too"]
    return [f"the vision tower and projector ({_vision_size(subject)}) are counted in the total and in "
            "weights_bytes, kept at 16 bits in every format; --text-only plans the text model alone"]


def _vision_size(subject: Subject) -> str:
    vision = subject.vision
    split = f": tower {vision.tower:,} + projector {vision.projector:,}" if vision else ""
    return f"{subject.vision_params:,} parameters{split}"


def _params_by_part(p: ParamCounts) -> dict[str, int]:
    return {"embedding": p.embedding, "lm_head": p.lm_head, "attention": p.attention,
            "dense_mlp": p.dense_mlp, "experts": p.experts, "router": p.router,
            "norms": p.norms, "biases": p.biases, "sinks": p.sinks, "expert_biases": p.expert_biases,
            "vision": p.extra}


def _memory_fields(m: InferenceMemory | TrainingMemory, kv_per_token: int) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "weights_bytes": m.weights_bytes,
        "weights_floor_bytes": m.weights_floor_bytes,
        "kv_cache_bytes": getattr(m, "kv_cache_bytes", 0),
        "kv_bytes_per_token": kv_per_token,
        "kv_engine": getattr(m, "kv_engine", None),  # whose KV cache rules kv_cache_bytes follows
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
