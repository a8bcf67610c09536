"""What every measured command shares: resolve the model and its weights, check the device,
run the measurement isolated, and write its record, failed or not.

The parent process never loads a model; the child does (`bench.isolate`). Whatever
happens in the child, one record is written: a crash, an out-of-memory or a timeout
becomes that record's status with the error text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.hfconfig import TextConfig, load_hf_config, refuse_remote_code
from bench.preflight import CapPlan
from bench.progress import current_display
from bench.registry import Registry
from bench.specs import HardwareSpec, ModelSpec


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
    """A registry id or alias, or a local directory holding a config.json."""
    path = Path(name)
    if path.is_dir() and (path / "config.json").exists():
        refuse_remote_code(path / "config.json", allowed=False)  # a local folder has no pinned opt-in
        return ResolvedModel(id=path.name, architecture=load_hf_config(path / "config.json"), local_path=path)
    spec = registry.model(name)
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
        from bench import synthetic

        return Weights(str(synthetic.build(spec, with_weights=spec.synthetic)), "synthetic", spec.repo,
                       spec.revision if spec.repo else None, None)
    if spec.synthetic:
        raise UserError(f"{spec.id} is built by bench: run it with --weights synthetic")
    from bench import hub
    from bench.preflight import download_bytes, free_disk_needed, select_checkpoint

    checkpoint = select_checkpoint(spec, quant)
    if not hub.offline():
        missing = download_bytes(spec, checkpoint) - hub.cached_bytes(checkpoint.repo)
        free_disk_needed(missing, hub.free_bytes(), str(hub.cache_dir()))
    checkout = hub.download(checkpoint.repo, checkpoint.revision)
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

    Runs in the parent, so it creates no CUDA context (see `bench.gpu_inventory`). With
    `on_device_budget` (llama.cpp), a CPU run may name an edge budget: nothing is capped, and
    llama.cpp's buffers are held against the budget by the verdict.
    """
    from bench.gpu_inventory import cuda_card_count, visible_cards
    from bench.preflight import check_cards, plan_cap

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
    from bench.environment import parent_view_of_hardware, software_versions
    from bench.isolate import run_isolated
    from bench.results import ModelRef, RunRecord, check_writable, new_record_id, write_record_or_fallback

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
    record = RunRecord(
        schema_version=1,
        id=record_id,
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
        started_at=started.isoformat(),
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
