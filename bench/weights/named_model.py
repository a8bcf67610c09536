"""What a model's name on the command line refers to, one order for every command.

A registry id or alias first; then the registry entry whose `repo` is the name (so a Hub id the
registry knows keeps its curated facts: variants, license, sources); then a local folder holding a
config.json; then a Hub id, `ORG/NAME[@REVISION]`. `plan`, `run`, `finetune`, `eval` and `serve` all
resolve names here, so they accept the same names and refuse the same ones with the same line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.config.hfconfig import SUPPORTED_MODEL_TYPES, WRAPPER_MODEL_TYPES
from bench.config.registry import MODEL_NAMING, Registry
from bench.config.specs import CheckpointVariant, ModelSpec
from bench.errors import UserError
from bench.estimate.plan import HF_CONFIG_QUANTS, Subject
from bench.estimate.quant import FORMATS
from bench.weights.hub_model import HubModel, fetch, local_checkpoint, parse_hub_id, read_config


@dataclass(frozen=True)
class NamedModel:
    """Exactly one of: a registry entry, a local folder, a Hub repository at a commit."""

    spec: ModelSpec | None = None
    folder: Path | None = None
    hub: HubModel | None = None


def find_model(registry: Registry, name: str, how: str = MODEL_NAMING) -> NamedModel:
    """Resolve `name`; an unknown one is refused with the closest registry ids and `how` to name others."""
    spec = registry.find_model(name)
    if spec is not None:
        return NamedModel(spec=spec)
    hub_id = parse_hub_id(name)
    if hub_id is not None and (spec := registry.find_model(hub_id[0])) is not None:
        if spec.trust_remote_code and hub_id[1] != spec.revision:
            raise UserError(f"{spec.id} runs its repository's own code, only at the commit its registry entry "
                            f"pins ({spec.revision}); drop @{hub_id[1]}")
        return NamedModel(spec=spec.model_copy(update={"revision": hub_id[1]}))  # the registry's model, as asked
    folder = Path(name)
    if folder.is_dir() and (folder / "config.json").is_file():
        return NamedModel(folder=folder)
    if hub_id is not None and not folder.exists():
        return NamedModel(hub=fetch(*hub_id))
    if folder.is_dir():
        raise UserError(f"{folder}: a model folder needs a config.json")
    raise registry.unknown_model(name, how)


def folder_subject(folder: Path, text_only: bool = False) -> Subject:
    """A local folder: its config.json, and its checkpoint's headers when its safetensors files are there."""
    raw = read_config(folder / "config.json", str(folder / "config.json"))
    subject = config_subject(raw, str(folder / "config.json"), text_only)
    checkpoint = local_checkpoint(folder, raw)
    return replace(subject, id=folder.name, source={"path": str(folder)}, checkpoint=checkpoint,
                   checkpoint_note=None if checkpoint else f"no safetensors headers in {folder}",
                   **_stored_first(checkpoint.quant if checkpoint else None))


def hub_subject(hub: HubModel, text_only: bool = False) -> Subject:
    """A Hub repository at its commit: the config's arithmetic, the checkpoint's bytes, where both came from."""
    subject = config_subject(hub.raw_config, f"{hub.repo}@{hub.commit[:12]}: config.json", text_only)
    return replace(subject, id=hub.repo, source=hub_source(hub), checkpoint=hub.checkpoint,
                   checkpoint_note=hub.checkpoint_note,
                   **_stored_first(hub.checkpoint.quant if hub.checkpoint else None))


def config_subject(raw: dict[str, Any], origin: str, text_only: bool) -> Subject:
    """bench's arithmetic for a family it knows; for another, transformers' count on the meta device."""
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or model_type in SUPPORTED_MODEL_TYPES or model_type in WRAPPER_MODEL_TYPES:
        return Subject.from_hf_config(raw, origin, text_only)
    from bench.weights.meta_count import COUNTED_BY, attention_shape, count_on_meta

    shape = attention_shape(raw, origin)  # first: a config without the fields is refused before torch loads
    return Subject(origin, shape, HF_CONFIG_QUANTS, counted_params=count_on_meta(raw, origin), counted_by=COUNTED_BY)


def hub_source(hub: HubModel) -> dict[str, str]:
    return {"repo": hub.repo, "revision": hub.revision, "commit": hub.commit, "license": hub.license}


def _stored_first(stored: str | None) -> dict[str, Any]:
    """The checkpoint's own format first (the plan's default breakdown is then of the real bytes); a
    pre-quantized format (int4) is obtainable because this repository is one."""
    if stored is None:
        return {}
    quants = (stored, *(q for q in HF_CONFIG_QUANTS if q != stored))
    return {"quants": quants, "prequantized": (stored,) if FORMATS[stored].prequantized else ()}


def hub_spec(hub: HubModel) -> ModelSpec:
    """A registry-shaped entry for a Hub repository, so a run downloads and records it as it would a
    registry model: pinned at the resolved commit, in the format its headers show."""
    from bench.config.hfconfig import from_hf_dict
    from bench.estimate.vision import count_vision

    if hub.has_safetensors is False:
        raise UserError(f"{hub.repo}@{hub.commit[:12]} has no safetensors weights ({hub.checkpoint_note}); "
                        "bench loads safetensors only")
    origin = f"{hub.repo}@{hub.commit[:12]}: config.json"
    stored = hub.checkpoint.format if hub.checkpoint else "bf16"
    quant = hub.checkpoint.quant if hub.checkpoint else "bf16"
    if quant is None:
        raise UserError(f"{hub.repo} stores its weights as {stored}, a format bench does not run")
    source = f"safetensors headers of {hub.repo}@{hub.commit}"
    vision = count_vision(hub.raw_config, origin)
    variants = ([CheckpointVariant(quant=quant, repo=hub.repo, revision=hub.commit, format=stored, source=source)]
                if stored in ("awq", "gptq") else [])
    return ModelSpec(
        id=hub.repo, display_name=hub.repo, repo=hub.repo, revision=hub.commit, license=hub.license,
        architecture=from_hf_dict(hub.raw_config, origin),
        checkpoint_format="fp8" if stored == "fp8" else "bf16", variants=variants,
        extra_params=vision.total if vision else 0,
        quants=list(_stored_first(quant).get("quants", HF_CONFIG_QUANTS)),
        sources={"architecture": f"config.json of {hub.repo}@{hub.commit}"},
        notes=f"named on the command line as {hub.repo}@{hub.revision}")
