"""Decisions made before a run touches a GPU or the network: each a pure function of its inputs.

A run that cannot work must say so in one line before it downloads anything: a 4-bit
cell that asks vLLM for bitsandbytes, an int4 cell of a model with no AWQ/GPTQ
repository, a bf16 cell of a model whose repository ships FP8, a two-card target on a
one-card machine, a checkpoint larger than the free disk. Each rule here takes plain
values (specs, names, byte counts) and either returns the decision or raises
:class:`UserError`, so every rule is unit-tested without a GPU, a hub or an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.backends.capabilities import BACKENDS, ENGINE_QUANTS, FROM_16_BIT, SYNTHETIC_QUANTS
from bench.config.specs import HardwareSpec, ModelSpec
from bench.errors import UserError
from bench.estimate.gguf import GGUF_FTYPES
from bench.estimate.quant import BITSANDBYTES_QUANTS
from bench.units import gib


def choose_backend(requested: str | None, quant: str) -> str:
    """The engine for a run: the one asked for, else vLLM, except for bitsandbytes quants (transformers)
    and GGUF types (llama.cpp)."""
    if requested is not None:
        if requested not in BACKENDS:
            raise UserError(f"unknown backend {requested!r}; choose {', '.join(BACKENDS)}")
        return requested
    if quant in GGUF_FTYPES and quant != "bf16":  # bf16 is also a checkpoint format: vLLM by default
        return "llama.cpp"
    return "transformers" if quant in BITSANDBYTES_QUANTS else "vllm"


def check_engine(backend: str, quant: str, device: str, weights: str, installed: frozenset[str]) -> None:
    """Refuse an engine x quant x device x weights combination that cannot run."""
    if backend == "vllm" and "vllm" not in installed:
        raise UserError("vLLM is not installed here: use --backend transformers (or install bench[gpu])")
    if backend == "llama.cpp" and "llama_cpp" not in installed:
        raise UserError("llama-cpp-python is not installed here: run scripts/setup-cpu.sh (or install bench[cpu])")
    if quant not in ENGINE_QUANTS[backend][device]:
        if backend == "vllm" and quant in BITSANDBYTES_QUANTS:
            raise UserError(f"--quant {quant} is bitsandbytes, which vLLM does not offer: use --backend "
                            "transformers")
        allowed = ", ".join(ENGINE_QUANTS[backend][device])
        raise UserError(f"--backend {backend} on --device {device} runs {allowed}, not {quant}")
    if quant in BITSANDBYTES_QUANTS and "bitsandbytes" not in installed:
        raise UserError(f"--quant {quant} needs bitsandbytes, which is not installed here")
    if weights == "synthetic" and quant not in SYNTHETIC_QUANTS[backend]:
        raise UserError(f"random weights in {quant} are not made by --backend {backend} (it makes "
                        f"{', '.join(SYNTHETIC_QUANTS[backend])}): use --weights real")


@dataclass(frozen=True)
class Checkpoint:
    """The repository a real-weight run downloads and the format it stores."""

    repo: str
    revision: str
    format: str  # bf16 | fp8 | awq | gptq


def select_checkpoint(spec: ModelSpec, quant: str) -> Checkpoint:
    """The repository whose stored format serves `quant`, or one line saying none does."""
    for variant in spec.variants:
        if variant.quant == quant:
            return Checkpoint(variant.repo, variant.revision, variant.format)
    if spec.repo is None:
        raise UserError(f"{spec.id} has no public weights: run it with --weights synthetic")
    if quant == "int4":
        raise UserError(f"{spec.id}: int4 runs a pre-quantized AWQ/GPTQ repository and the registry names none "
                        f"for it (add one under `variants`); --quant nf4 quantizes {spec.repo} while loading")
    if spec.checkpoint_format == "fp8" and quant in FROM_16_BIT:
        for variant in spec.variants:
            if variant.format == "bf16":
                return Checkpoint(variant.repo, variant.revision, variant.format)
        raise UserError(f"{spec.repo} stores FP8 weights and the registry names no bf16 copy: use --quant fp8")
    return Checkpoint(spec.repo, spec.revision, spec.checkpoint_format)


def check_cards(target: HardwareSpec | None, visible: int) -> None:
    """A multi-card target needs that many cards here: one card cannot measure two."""
    needed = target.device_count if target else 1
    if visible < needed:
        name = target.id if target else "this run"
        raise UserError(f"{name} needs {needed} CUDA cards and this machine shows {visible}")


@dataclass(frozen=True)
class CapPlan:
    """How a run on the card at hand stands for the claimed card.

    `emulated` runs are capped: the measuring child caps each card at the target's CUDA
    memory less the CUDA context it measures (`allocator_cap`). `card_name` is the card at
    hand as NVML names it (None without NVML, or on a CPU).
    """

    emulated: bool
    target_cuda_bytes: int | None
    reason: str
    card_name: str | None = None


def plan_cap(target: HardwareSpec | None, device: str, card_name: str | None,
             card_total_bytes: int | None) -> CapPlan:
    """Whether the run is the claimed card itself, an emulation of it, or cannot stand for it.

    The card at hand is the claimed card when its name is one of the profile's device
    names; then nothing is capped and the record says measured on the claimed card. A
    larger card is capped; a smaller one cannot show that a larger card fits anything.
    """
    if device != "cuda" or target is None:
        return CapPlan(False, None, "no target card", card_name)
    if card_name is not None and card_name.lower() in (n.lower() for n in target.device_names):
        return CapPlan(False, None, f"the card is a {target.id}", card_name)
    if card_total_bytes is not None and card_total_bytes < target.cuda_memory_bytes:
        raise UserError(f"this card ({card_name}, {gib(card_total_bytes, 2)}) is smaller than "
                        f"{target.id}'s {gib(target.cuda_memory_bytes, 2)}: it cannot emulate it")
    return CapPlan(True, target.cuda_memory_bytes, f"capped to {target.id}'s CUDA memory less the CUDA context",
                   card_name)


def check_llamacpp_cap(backend: str, cap: CapPlan, target: HardwareSpec | None) -> None:
    """Refuse a llama.cpp run that would have to be capped: nothing caps it.

    llama.cpp allocates its own CUDA buffers (cudaMalloc through ggml, outside torch's allocator), and
    `n_gpu_layers` or a tensor split place layers, they bound nothing; the run would use the whole card
    while its record claimed the smaller one. On the claimed card itself, or with no target, it runs.
    """
    if backend == "llama.cpp" and cap.emulated and target is not None:
        raise UserError(f"llama.cpp cannot be held to {target.id}'s memory on this card ({cap.card_name}): it "
                        "allocates its own buffers, and n_gpu_layers places layers without capping them. Run it "
                        f"on a {target.id}, without --gpu (uncapped), or on --device cpu, whose buffers decide "
                        "claims that name a local runner")


def check_driver(backend: str, driver: str | None, floor: str | None) -> None:
    """Refuse a driver older than the CUDA runtime the engine links (`bench.launch.environment.driver_floor`):
    CUDA would fail to initialise in the child with a message about the driver, after the model was fetched.
    Unknown either way (no NVML, a CPU build): nothing to refuse."""
    from bench.launch.environment import driver_older_than

    if driver and floor and driver_older_than(driver, floor):
        raise UserError(f"--backend {backend} needs NVIDIA driver {floor} or later for the CUDA runtime it links; "
                        f"this machine has {driver}")


def vllm_batch_tokens(target: HardwareSpec) -> int:
    """vLLM's default `max_num_batched_tokens` for its offline engine on the target's class of card.

    vLLM (engine/arg_utils.py, `get_batch_defaults`) gives cards of 70 GiB or more by NVML,
    A100s excepted, 16384 tokens per step and the rest 8192. It reads the card it runs on, so
    an H100 emulating a 4090 would prefill in chunks twice the 4090's: bench passes the
    target's value instead.
    """
    large = target.memory_gib >= 70 and "a100" not in target.id
    return 16384 if large else 8192
