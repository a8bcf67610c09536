"""Typed specs for everything under ``configs/``.

Every spec is frozen and rejects unknown fields, so a typo in a YAML file is an
error that names the file and the field instead of a silently ignored key.
The architecture of a model is kept in Hugging Face ``config.json`` field names
(:class:`bench.config.hfconfig.TextConfig`), so the registry and ``bench plan --config``
share one parser.
"""

from __future__ import annotations

from typing import Literal

from bench.config.hfconfig import TextConfig
from bench.config.strict import Strict, field, validator

Quant = Literal["bf16", "fp16", "fp8", "int8", "nf4", "int4", "f16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q4_0"]  # noqa: E501
Method = Literal["lora", "qlora", "full", "dpo", "reward"]


class Finding(Strict):
    """A mismatch between what a seed page says and what is public."""

    claim: str = field(description="What the page says, in its words")
    fact: str = field(description="What public sources show")
    source: str = field(description="Where the fact comes from")


class CheckpointVariant(Strict):
    """Another repository of the same model: a pre-quantized (AWQ/GPTQ) or other-precision copy.

    A run picks the repository whose stored format serves the asked quant, so that an int4 cell
    never downloads a 16-bit checkpoint it cannot use, and a bf16 cell of a model whose main
    repository ships FP8 loads real bf16 weights.
    """

    quant: Quant = field(description="The bench quant this repository serves")
    repo: str
    revision: str = "main"
    format: Literal["bf16", "fp8", "awq", "gptq"] = field(description="How the repository stores its weights")
    source: str = field(description="Where the repository and its format were seen")


class ModelSpec(Strict):
    """One model of the registry: identity, provenance and architecture."""

    id: str
    display_name: str
    aliases: list[str] = []
    repo: str | None = field(None, description="Hugging Face repo id; None for models bench builds itself")
    revision: str = field("main", description="A commit where known, else a branch that a real run resolves")
    license: str = field(description="SPDX-like id: apache-2.0, mrl, llama4, modified-mit, proprietary")
    gated: bool | None = field(None, description="None where no source showed the gate state")
    open_weights: bool = True
    synthetic: bool = field(False, description="Built by bench from the architecture (tiny test models)")
    proxy: str | None = field(
        None, description="Set when the architecture is a stand-in shape, with the reason (no public weights)"
    )
    trust_remote_code: bool = False
    checkpoint_format: Literal["bf16", "fp8"] = field(
        "bf16", description="How `repo` stores its weights (an FP8 repository serves fp8 runs only)")
    variants: list[CheckpointVariant] = field([], description="Other repositories, one per quant they serve")
    architecture: TextConfig
    extra_params: int = field(
        0, description="Parameters outside the text model (vision tower, projector), counted in total only"
    )
    published_params: dict[str, float] = field(
        {}, description="Published counts, e.g. total: 141e9, active: 39e9, with sources in `sources`"
    )
    quants: list[Quant] = ["bf16", "fp8", "int8", "nf4", "int4"]
    sources: dict[str, str] = field({}, description="Where each group of numbers comes from")
    findings: list[Finding] = []
    notes: str = ""

    @validator
    def _remote_code_needs_pinned_revision(self) -> ModelSpec:
        if self.trust_remote_code and not _looks_like_commit(self.revision):
            raise ValueError("trust_remote_code needs `revision` pinned to a 40-character commit")
        return self


def _looks_like_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


class HardwareSpec(Strict):
    """One target card (or a set of identical cards), with the datasheet's numbers."""

    id: str
    display_name: str
    aliases: list[str] = []
    memory_gib: float = field(gt=0, description="Memory of one device, GiB")
    memory_bandwidth_gbs: float = field(gt=0, description="Per device, GB/s (1e9 bytes)")
    bf16_tflops: float = field(gt=0, description="Dense (not sparse) bf16 tensor TFLOP/s per device")
    device_count: int = field(1, ge=1)
    device_class: Literal["consumer", "datacenter", "edge"]
    device_names: list[str] = field(
        [], description="Names torch reports for this card: how a run finds the profile of the card it ran on")
    runtime_overhead_gib: float = field(
        1.0, ge=0, description="Per device: CUDA context, library workspaces, allocator slack"
    )
    cuda_memory_gib: float | None = field(
        None, gt=0, description="Per device: the memory CUDA offers a process (cudaMemGetInfo's total, what "
                                "torch reports as total capacity), below the datasheet's; what an emulated run "
                                "is capped to, less the CUDA context. Source in `sources`.")
    sources: dict[str, str]
    notes: str = ""

    @property
    def budget_bytes(self) -> int:
        return int(self.memory_gib * 2**30 * self.device_count)

    @property
    def cuda_memory_bytes(self) -> int:
        """Per device; the datasheet memory where no CUDA total was recorded (edge budgets)."""
        return int((self.cuda_memory_gib or self.memory_gib) * 2**30)

    @validator
    def _cuda_memory_sourced(self) -> HardwareSpec:
        if self.cuda_memory_gib is not None and "cuda_memory_gib" not in self.sources:
            raise ValueError("cuda_memory_gib needs its source in `sources`")
        if self.cuda_memory_gib is not None and self.cuda_memory_gib > self.memory_gib:
            raise ValueError("cuda_memory_gib cannot exceed memory_gib")
        return self


class RecipeSpec(Strict):
    """One fine-tune recipe for a smoke test and for the training-memory estimate."""

    id: str
    aliases: list[str] = []
    description: str
    method: Method
    quant: Quant = field("bf16", description="How the frozen base is held: bf16, or nf4 for QLoRA")
    double_quant: bool = False
    rank: int | None = field(None, ge=1)
    alpha: float | None = None
    dropout: float = field(0.0, ge=0, lt=1)
    target_modules: list[str] = []
    moe_targets: list[Literal["attention", "experts", "shared_experts"]] = ["attention"]
    sequence_length: int = field(gt=0)
    micro_batch: int = field(gt=0)
    gradient_accumulation: int = field(1, ge=1)
    gradient_checkpointing: bool = True
    activation_offload: bool = field(False, description="Checkpointed layer inputs kept in host memory (torchtune)")
    packing: bool = field(False, description="Sequences packed to `sequence_length`, so no step holds padding")
    adapter_dtype: Literal["fp32", "bf16"] | None = field(
        None, description="How adapters are held; None: as trl leaves them (fp32 over a 16-bit base, bf16 over a "
                          "bitsandbytes one)")
    full_precision: Literal["mixed", "bf16"] = field(
        "bf16", description="Full fine-tuning: pure bf16 weights, or fp32 master weights with bf16 autocast")
    optimizer: Literal["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "sgd"]
    optimizer_in_backward: bool = field(
        False, description="Each parameter stepped as its gradient arrives, so gradients are never all held")
    loss: Literal["hf", "hf_legacy", "chunked", "fused_linear"] = field(
        "fused_linear", description="hf: the model's own cross-entropy over fp32 logits; hf_legacy: the same in "
                                    "transformers before 4.46 (fp32 logits, shifted by a copy past one sequence); "
                                    "chunked: torchtune's chunked cross-entropy; fused_linear: logits never "
                                    "materialised (trl's fused LM head, Liger)")
    dpo_reference: Literal["adapter_off", "copy", "precomputed"] = field(
        "adapter_off", description="DPO's reference: the base with the adapter off, a second frozen copy, or "
                                   "log-probs computed before training")
    learning_rate: float = field(gt=0)
    steps: int = field(gt=0, description="Optimizer steps in a smoke test")
    dataset: str = field(description="builtin:<name>, a local JSONL path, or a hub dataset id")
    beta: float | None = field(None, description="DPO temperature")

    @validator
    def _adapter_fields(self) -> RecipeSpec:
        if self.method != "full" and (self.rank is None or not self.target_modules):
            raise ValueError(f"method {self.method} trains adapters: set `rank` and `target_modules`")
        if self.method == "qlora" and self.quant != "nf4":
            raise ValueError("method qlora holds the base in nf4: set `quant: nf4`")
        for problem in _impossible_combinations(self):
            raise ValueError(problem)
        return self


def _impossible_combinations(r: RecipeSpec) -> list[str]:
    """Settings that contradict each other, each as the one line a user sees."""
    problems = []
    if r.method == "full" and r.quant not in ("bf16", "fp16"):
        problems.append(f"method full trains every weight: a {r.quant} base cannot be trained, use bf16")
    if r.method == "full" and r.adapter_dtype is not None:
        problems.append("method full trains no adapter: drop `adapter_dtype`")
    if r.method != "full" and r.full_precision != "bf16":
        problems.append(f"full_precision applies to method full, not {r.method}")
    if r.optimizer_in_backward and r.gradient_accumulation > 1:
        problems.append("optimizer_in_backward steps on every micro batch: it needs gradient_accumulation 1")
    if r.activation_offload and not r.gradient_checkpointing:
        problems.append("activation_offload moves checkpointed layer inputs: it needs gradient_checkpointing")
    if r.method == "reward" and r.loss != "fused_linear":
        problems.append("a reward model scores with a one-output head: it has no vocabulary loss to choose")
    if r.method != "dpo" and r.dpo_reference != "adapter_off":
        problems.append(f"dpo_reference applies to method dpo, not {r.method}")
    if "experts" in r.moe_targets:
        problems.append("moe_targets experts: transformers 5 holds routed experts as fused 3-D parameters, which LoRA "
                        "target modules never reach; use attention and shared_experts")
    return problems


ClaimKind = Literal[
    "inference-memory",  # the model runs on the card (weights + KV + runtime)
    "finetune-memory",  # a recipe trains on the card
    "speed",  # a throughput or latency figure on a card
    "responsive",  # a chat answers and streams fast enough for one user (bench serve; bench.verdicts.responsive)
    "context",  # a context length the model supports
    "params",  # a parameter count, total or active
    "license",  # the license the weights ship under
    "open-weights",  # the weights are downloadable
    "eval",  # a quality comparison decided by eval scores
    "runtime",  # the model loads and generates in a named local runner (llama.cpp, Ollama)
]

# Local runners whose memory is llama.cpp's: Ollama runs the same GGUF files on the same ggml code.
Runner = Literal["llama.cpp", "ollama"]


class ClaimConditions(Strict):
    """What the quote states (or implies) about the setting of a claim."""

    gpu: str | None = None
    quant: Quant | None = None
    context: int | None = field(None, gt=0)
    batch: int | None = field(None, gt=0)
    recipe: str | None = None
    tasks: list[str] = []
    compare_to: list[str] = field([], description="Model ids an eval claim compares against")
    runner: Runner | None = field(None, description="The local runner the quote names: its memory is llama.cpp's "
                                                    "buffers, and a runtime claim is decided by a llama.cpp run")


class ClaimThreshold(Strict):
    """The number a claim commits to; which field applies depends on the kind."""

    total_params: float | None = None
    active_params: float | None = None
    tolerance: float = field(0.05, ge=0, description="Relative slack for params claims")
    context_tokens: int | None = None
    license: str | None = None
    open_weights: bool | None = None
    decode_tokens_per_s: float | None = None
    ttft_s: float | None = field(None, gt=0, description="Responsive claims: time to first token, seconds")
    tokens_per_s_per_user: float | None = field(None, gt=0, description="Responsive claims: the reading rate")


class ClaimSpec(Strict):
    id: str
    speaker: str = field(description="Who said it on the page: the product blurb or a panel position")
    quote: str
    subject: str = field(description="Model id of the registry")
    product: str = field(description="The product name as the page gives it")
    kind: ClaimKind
    conditions: ClaimConditions = ClaimConditions()
    threshold: ClaimThreshold = ClaimThreshold()
    meaning: str = field("", description="What the claim asserts, restated in measurable terms; shown beside the "
                                         "quote (default: restated from kind, conditions and threshold)")
    unchecked: list[str] = field([], description="Parts of the same quote no claim decides, each with why: the "
                                                 "quote as a whole is then untested at best")
    notes: str = ""


class ClaimSource(Strict):
    """A file of ``configs/claims/``: the claims quoted from one seed page."""

    source: str = field(description="Seed file name")
    title: str = field(description="The page's title, as it heads the page")
    address: str | None = field(None, description="The page's web address, where known (citations carry it)")
    published: str | None = field(None, description="The page's publication date, where known")
    products: list[str]
    claims: list[ClaimSpec]
    uncheckable: list[str] = field([], description="Statements judged uncheckable, each with why")
