"""Load and cross-check everything under ``configs/``.

Every YAML file is validated into its spec when the registry loads; an error
names the file and the field. Names resolve through ids and aliases, case
insensitively, and an unknown name answers with the closest ids.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench.config.hfconfig import from_hf_dict
from bench.config.parsed_cache import parsed_files
from bench.config.specs import ClaimSource, ClaimSpec, HardwareSpec, ModelSpec, RecipeSpec
from bench.config.strict import Strict, ValidationError
from bench.errors import UserError, unknown_name_error

Spec = TypeVar("Spec", bound=Strict)
# What else a model's name may be, said wherever a name is not the registry's.
MODEL_NAMING = "name a Hub model as ORG/NAME[@REVISION], or a local folder with a config.json"


def default_config_dir() -> Path:
    """``BENCH_CONFIG_DIR``, else the configs shipped inside the wheel, else the checkout's."""
    if env := os.environ.get("BENCH_CONFIG_DIR"):
        return Path(env)
    package = Path(__file__).resolve().parents[1]  # bench/
    packaged = package / "configs"
    return packaged if packaged.is_dir() else package.parent / "configs"


def read_yaml(path: Path) -> Any:
    import yaml  # here: a registry whose files are unchanged loads from bench.config.parsed_cache without it

    try:  # libyaml's parser where the wheel has it
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError as err:
        line = path.read_bytes()[:err.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 (byte 0x{err.object[err.start]:02x})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} not valid YAML ({getattr(err, 'problem', err)})") from None


def load_spec(path: Path, spec: type[Spec], raw: Any) -> Spec:
    """`raw`, what `path` parsed to, validated into `spec`."""
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of fields at the top level")
    if spec is ModelSpec and isinstance(raw.get("architecture"), dict):
        # Fill in the family's defaults, as transformers would, before strict validation.
        raw = {**raw, "architecture": from_hf_dict(raw["architecture"], f"{path}: architecture", strict=True)}
    try:
        return spec.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{path}: {err}") from None


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelSpec]
    hardware: dict[str, HardwareSpec]
    recipes: dict[str, RecipeSpec]
    claim_sources: list[ClaimSource]
    claim_slugs: dict[str, str]  # seed file name -> the claims file's stem (a page name for reports)

    def model(self, name: str, how: str = MODEL_NAMING) -> ModelSpec:
        """By id or alias, else the entry whose `repo` is `name` (a Hub id names the registry's model)."""
        found = self.find_model(name)
        if found is None:
            raise self.unknown_model(name, how)
        return found

    def unknown_model(self, name: str, how: str = MODEL_NAMING) -> UserError:
        """The one line for a name no lookup found: the closest registry ids, and `how` to name others."""
        names = list(self.models) + [a for spec in self.models.values() for a in spec.aliases]
        return unknown_name_error("model", name, names, "`bench models`", how)

    def find_model(self, name: str) -> ModelSpec | None:
        key = name.lower()
        for spec in self.models.values():
            if key == spec.id or key in (a.lower() for a in spec.aliases):
                return spec
        return next((spec for spec in self.models.values() if spec.repo and spec.repo.lower() == key), None)

    def gpu(self, name: str) -> HardwareSpec:
        return _lookup("GPU", name, self.hardware, "`bench gpus`")

    def gpu_for_device(self, device_name: str) -> HardwareSpec | None:
        """The single-card profile of an observed device (for its roofline), if the registry has one."""
        for spec in self.hardware.values():
            if spec.device_count == 1 and device_name.lower() in (n.lower() for n in spec.device_names):
                return spec
        return None

    def recipe(self, name: str) -> RecipeSpec:
        return _lookup("recipe", name, self.recipes, "`bench finetune --help`")

    def claims(self) -> Iterator[tuple[ClaimSource, ClaimSpec]]:
        for source in self.claim_sources:
            for claim in source.claims:
                yield source, claim

    def claim(self, claim_id: str) -> ClaimSpec:
        by_id = {c.id: c for _, c in self.claims()}
        if claim_id not in by_id:
            raise unknown_name_error("claim", claim_id, by_id, "`bench verdicts`")
        return by_id[claim_id]


def _lookup(kind: str, name: str, table: dict[str, Any], listing: str) -> Any:
    key = name.lower()
    for spec in table.values():
        if key == spec.id or key in (a.lower() for a in spec.aliases):
            return spec
    names = list(table) + [a for spec in table.values() for a in spec.aliases]
    raise unknown_name_error(kind, name, names, listing)


def _load_dir(directory: Path, spec: type[Spec], parsed: dict[Path, Any]) -> list[tuple[Path, Spec]]:
    return [(p, load_spec(p, spec, raw)) for p, raw in parsed.items() if p.parent == directory]


def _index(kind: str, loaded: list[tuple[Path, Any]]) -> dict[str, Any]:
    """Map id -> spec; ids must match file names and no name may be taken twice."""
    table: dict[str, Any] = {}
    owner: dict[str, Path] = {}
    for path, spec in loaded:
        if spec.id != path.stem:
            raise UserError(f"{path}: id: {spec.id!r} must match the file name {path.stem!r}")
        for name in [spec.id, *(a.lower() for a in spec.aliases)]:
            if name in owner:
                raise UserError(f"{path}: {kind} name {name!r} is already taken by {owner[name]}")
            owner[name] = path
        table[spec.id] = spec
    return table


@functools.cache
def load_registry(config_dir: Path | None = None) -> Registry:
    root = Path(config_dir) if config_dir else default_config_dir()
    if not root.is_dir():
        raise UserError(f"{root}: no configs directory (set BENCH_CONFIG_DIR)")
    folders = {"claims": ClaimSource, "models": ModelSpec, "hardware": HardwareSpec, "finetune": RecipeSpec}
    parsed = parsed_files(root, [p for name in folders for p in sorted((root / name).glob("*.yaml"))], read_yaml)
    loaded = {name: _load_dir(root / name, spec, parsed) for name, spec in folders.items()}
    claim_files = loaded["claims"]
    registry = Registry(
        models=_index("model", loaded["models"]),
        hardware=_index("GPU", loaded["hardware"]),
        recipes=_index("recipe", loaded["finetune"]),
        claim_sources=[spec for _, spec in claim_files],
        claim_slugs={spec.source: path.stem for path, spec in claim_files},
    )
    _check_claim_references(claim_files, registry)
    return registry


def _check_claim_references(claim_files: list[tuple[Path, ClaimSource]], registry: Registry) -> None:
    """Claims must name real models, cards and recipes, and ids must be unique."""
    seen: set[str] = set()
    for path, source in claim_files:
        for i, claim in enumerate(source.claims):
            where = f"{path}: claims.{i}.{claim.id}"
            if claim.id in seen:
                raise UserError(f"{where}: id is used twice")
            seen.add(claim.id)
            try:
                registry.model(claim.subject, how="")  # a claim names a registry model, never a Hub id
                if claim.conditions.gpu:
                    registry.gpu(claim.conditions.gpu)
                if claim.conditions.recipe:
                    registry.recipe(claim.conditions.recipe)
            except UserError as err:
                raise UserError(f"{where}: {err}") from None
