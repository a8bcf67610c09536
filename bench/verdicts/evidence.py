"""Which records count as evidence for a claim, best first, and the words for each class of evidence.

Precedence (design: issue "Verdicts from measurements"): measured on the claimed card
beats measured under a memory cap on a larger card, which beats a synthetic-weight
measurement (valid for memory and speed, never for quality), which beats a fine-tune step
traced on fake tensors at the real size (`bench trace`), which beats arithmetic.
Only runs that ended (ok, or out of memory) are evidence; a crash or a timeout says
nothing about the claim and is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.config.specs import ClaimSpec, HardwareSpec, RecipeSpec

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord

# The evidence classes in words, one wording wherever a verdict is shown (`verdicts`, `cite`, the
# reports); strongest first, as design section 5 orders them.
MEASURED_ON_CARD = "measured on the claimed card"
MEASURED_UNDER_CAP = "measured under a cap emulating the claimed card"
MEASURED_SYNTHETIC = "measured with synthetic weights"
# A fine-tune step of the program `bench finetune` runs, on fake tensors of the real shape: its tensor peak plus
# the planner's CUDA overhead (what no tensor holds) against the card.
TRACED = "traced from the real program at the real size"
MEASURED_LLAMACPP_CPU = "measured on a CPU with llama.cpp"
# A GPU claim that names a local runner, decided by the same CPU buffers: the card also holds the CUDA
# context and library workspaces, calibrated per runner from published logs (`RUNNER_CUDA_PAIRS` below).
LLAMACPP_PLUS_CUDA = "llama.cpp buffers measured on a CPU plus the runner's published CUDA overhead"
MEASURED_EVAL = "measured: lm-eval scores with standard errors"
REGISTRY_FACT = "registry fact"
ARITHMETIC_COUNT = "arithmetic: exact count from the architecture"
ARITHMETIC_LOWER_BOUND = "arithmetic lower bound"
ARITHMETIC_ESTIMATE = "arithmetic estimate"
ARITHMETIC_ROOFLINE = "arithmetic upper bound (bandwidth roofline)"
NO_EVIDENCE = "no evidence yet"
NOT_CHECKED = "not checked: no claim decides this part of the quote"
# Every class, strongest first, for the reports' legend.
CLASSES_STRONGEST_FIRST = (MEASURED_ON_CARD, MEASURED_UNDER_CAP, MEASURED_SYNTHETIC, TRACED, MEASURED_LLAMACPP_CPU,
                           LLAMACPP_PLUS_CUDA, MEASURED_EVAL, REGISTRY_FACT, ARITHMETIC_COUNT, ARITHMETIC_LOWER_BOUND,
                           ARITHMETIC_ESTIMATE, ARITHMETIC_ROOFLINE, NOT_CHECKED, NO_EVIDENCE)
# What a card holds beyond llama.cpp's own buffers when a local runner offloads every layer to it (the CUDA
# context, cuBLAS's handle and workspace, ggml's memory pool), from published pairs of a runner's logged CUDA
# buffers and nvidia-smi's figure for the same process: (runner, source, CUDA0 buffers in MiB, nvidia-smi MiB).
RUNNER_CUDA_PAIRS = (
    # Mistral Small 22B, 57 of 57 layers, num_ctx 49152, q8_0 KV: model 17295.40 + KV 5712.00 + compute 192.00 MiB
    # on CUDA0, nvidia-smi 23508 MiB for ollama_llama_server (the CUDA_Host buffers are host memory).
    ("ollama", "github.com/ollama/ollama/issues/6160 (comment of 2024-10-02)", (17295.40, 5712.00, 192.00), 23508),
)
# Ollama's runner is llama.cpp's server on the same ggml CUDA backend, so llama.cpp run directly holds the same
# beyond its buffers; no published llama.cpp pair with an nvidia-smi figure was found to check it apart.
SAME_BACKEND = {"llama.cpp": "ollama"}
OVERHEAD_STEP = 64 * 2**20  # pairs are rounded up to this: nvidia-smi reports whole MiB, the context varies a little


def _calibrated(runner: str) -> int:
    gaps = [smi - sum(buffers) for name, _, buffers, smi in RUNNER_CUDA_PAIRS if name == runner]
    most = max(gaps) * 2**20
    return -(-int(most) // OVERHEAD_STEP) * OVERHEAD_STEP


# Bytes per card beyond the buffers, per local runner: the largest published gap, rounded up (320 MiB today).
RUNNER_CUDA_OVERHEAD_BYTES = {runner: _calibrated(SAME_BACKEND.get(runner, runner)) for runner in ("ollama",
                                                                                                   "llama.cpp")}


def runner_cuda_overhead_bytes(runner: str | None, card: HardwareSpec) -> int | None:
    """What `card` holds beyond a local runner's CUDA buffers, for every device of the card; 0 on an edge
    budget (the buffers alone, as the CPU measured them); None for a runner with no calibration."""
    if card.device_class == "edge":
        return 0
    per_card = RUNNER_CUDA_OVERHEAD_BYTES.get(runner or "")
    return None if per_card is None else per_card * card.device_count


# What `rank` orders, in the words above.
RANK_CLASSES = {3: MEASURED_ON_CARD, 2: MEASURED_UNDER_CAP, 1: MEASURED_SYNTHETIC, 0: MEASURED_LLAMACPP_CPU}


def is_llamacpp_on_cpu(record: RunRecord) -> bool:
    """A llama.cpp run on a CPU: its buffers are the bytes a device would hold for the same file."""
    engine = record.details.get("engine") or {}
    return engine.get("engine") == "llama.cpp" and record.hardware.get("device") == "cpu"


LLAMACPP_BUFFERS = ("model", "kv", "rs", "compute", "output")


def llamacpp_held_bytes(record: RunRecord) -> dict[str, int]:
    """The bytes of each buffer llama.cpp allocated in a run (weights, KV cache, recurrent state,
    compute graph, output): what a device running the same file at the same context allocates."""
    engine = record.details.get("engine") or {}
    return {name: engine[f"{name}_buffer_bytes"] for name in LLAMACPP_BUFFERS if engine.get(f"{name}_buffer_bytes")}


def rank(record: RunRecord) -> int:
    if is_llamacpp_on_cpu(record):
        return 0
    if record.model.weights == "synthetic":
        return 1
    return 2 if record.hardware.get("emulated") else 3


def engine_quant(record: RunRecord) -> str | None:
    """The weight format the engine ran: its own report where it made one (an FP8 checkpoint runs FP8
    whatever was asked), else what the run asked for."""
    ran = (record.details.get("engine") or {}).get("weights_format")
    if ran:
        return ran
    if record.kind == "inference":
        return record.config.get("scenario", {}).get("engine", {}).get("quant")
    if record.kind == "finetune":
        return record.config.get("recipe", {}).get("quant")
    return None


def context_capacity(record: RunRecord) -> int:
    """The context the run proved room for: a request that filled it, or, for engines that allocate
    their KV cache up front (vLLM, llama.cpp), the context the engine was sized for."""
    scenario: dict[str, Any] = record.config.get("scenario", {})
    filled = scenario.get("context") or 0
    if scenario.get("backend") in ("vllm", "llama.cpp"):
        return max(filled, scenario.get("engine", {}).get("max_model_len") or 0)
    return filled


def _inference_matches(record: RunRecord, claim: ClaimSpec) -> bool:
    scenario: dict[str, Any] = record.config.get("scenario", {})
    cond = claim.conditions
    if cond.quant and engine_quant(record) != cond.quant:
        return False
    if cond.context and context_capacity(record) < cond.context:
        return False
    return not (cond.batch and scenario.get("batch", 0) < cond.batch)


def llamacpp_decides(claim: ClaimSpec, card: HardwareSpec | None) -> bool:
    """Whether llama.cpp's CPU-measured buffers bear on a memory claim, whatever budget the run named:
    an on-device budget holds the same bytes as the CPU did, and a GPU claim that names a local runner
    holds them plus the CUDA overhead."""
    return card is not None and (card.device_class == "edge" or claim.conditions.runner is not None)


def memory_evidence(records: list[RunRecord], claim: ClaimSpec, recipe: RecipeSpec | None,
                    card: HardwareSpec | None = None) -> list[RunRecord]:
    """Records that test a memory or fine-tune claim on its card (`card`), best first.

    A llama.cpp run on a CPU counts wherever `llamacpp_decides`, not only for the budget it named."""
    kind = "finetune" if claim.kind == "finetune-memory" else "inference"
    found = []
    for record in records:
        if record.kind != kind or record.model.id != claim.subject or record.status not in ("ok", "oom"):
            continue
        if is_llamacpp_on_cpu(record):
            if not llamacpp_decides(claim, card):
                continue
        elif record.hardware.get("target") != claim.conditions.gpu:
            continue
        if kind == "inference" and not _inference_matches(record, claim):
            continue
        if kind == "finetune" and recipe is not None and record.config.get("recipe", {}).get("method") not in (
                recipe.method, "qlora" if recipe.method == "lora" else recipe.method):
            continue
        found.append(record)
    return sorted(found, key=lambda r: (rank(r), r.status == "ok", r.started_at), reverse=True)


# Recipe fields a trace may exceed (a longer sequence or a larger batch holds more) or differ in without changing
# the step's memory (how many steps a run takes, how it is named).
_TRACE_AT_LEAST = ("sequence_length", "micro_batch")
_TRACE_IRRELEVANT = ("id", "aliases", "description", "steps", "dataset", "learning_rate")


def trace_evidence(records: list[RunRecord], claim: ClaimSpec,
                   readings: list[RecipeSpec]) -> list[tuple[RunRecord, RecipeSpec]]:
    """Traces (`bench trace`) that bear on a fine-tune claim, newest first, each with the reading of the claim it
    traced: the claim's model and card, and one of `readings` (the claim's recipe as the registry holds it now,
    and the cheaper ones the quote allows) field for field, at the claim's sequence length and batch or more."""
    if claim.kind != "finetune-memory":
        return []
    cond, found = claim.conditions, []
    for record in records:
        traced = record.config.get("recipe") or {}
        if (record.kind != "trace" or record.status != "ok" or record.model.id != claim.subject
                or record.hardware.get("target") != cond.gpu):
            continue
        for reading in readings:
            wanted = reading.model_dump()
            at_least = {"sequence_length": cond.context or reading.sequence_length,
                        "micro_batch": cond.batch or reading.micro_batch}
            same = all(traced.get(k) == v for k, v in wanted.items()
                       if k not in (*_TRACE_AT_LEAST, *_TRACE_IRRELEVANT))
            if same and all((traced.get(k) or 0) >= v for k, v in at_least.items()):
                found.append((record, reading))
                break
    return sorted(found, key=lambda pair: pair[0].started_at, reverse=True)


def speed_evidence(records: list[RunRecord], claim: ClaimSpec) -> list[RunRecord]:
    """Inference records on the claimed card itself (a capped larger card's speed is not the claim's)."""
    found = [r for r in records if r.kind == "inference" and r.model.id == claim.subject and r.status == "ok"
             and r.hardware.get("target") == claim.conditions.gpu and not r.hardware.get("emulated")
             and _inference_matches(r, claim)]
    return sorted(found, key=lambda r: r.started_at, reverse=True)


def runtime_evidence(records: list[RunRecord], claim: ClaimSpec) -> list[RunRecord]:
    """llama.cpp runs of the claim's model that loaded it (and generated) or failed to, newest first.

    A timeout says nothing about whether the runner knows the architecture, so it is left out."""
    found = [r for r in records if r.kind == "inference" and r.model.id == claim.subject
             and r.config.get("scenario", {}).get("backend") == "llama.cpp" and r.status in ("ok", "error")]
    return sorted(found, key=lambda r: (r.status == "ok", r.started_at), reverse=True)


def eval_record(records: list[RunRecord], model_id: str, task: str) -> RunRecord | None:
    """The latest ok eval of a model on a task with real weights and no document limit."""
    found = [r for r in records if r.kind == "eval" and r.model.id == model_id and r.status == "ok"
             and r.model.weights == "real" and r.metrics.get("limit") is not None
             and r.metrics["limit"].value is None and task in (r.metrics["scores"].value or {})]
    return max(found, key=lambda r: r.started_at, default=None)


def measured_class(record: RunRecord) -> str:
    """The class of a record that decided a verdict, by its precedence."""
    return RANK_CLASSES[rank(record)]


def record_class(record: RunRecord) -> str:
    """The class of one record as evidence, whatever claim it bears on (a record's card named)."""
    if is_llamacpp_on_cpu(record):
        return MEASURED_LLAMACPP_CPU
    if record.kind == "trace":
        return f"{TRACED} (fake {record.config.get('device')} tensors)"
    if record.hardware.get("device") == "cpu":
        return "measured on CPU" + (" with synthetic weights" if record.model.weights == "synthetic" else "")
    if record.model.weights == "synthetic":
        return MEASURED_SYNTHETIC
    if record.hardware.get("emulated"):
        return f"measured under a cap emulating {record.hardware.get('target')}"
    return "measured on " + str(record.hardware.get("device_name") or "a GPU")
