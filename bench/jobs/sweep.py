"""`bench sweep`: a matrix of runs from a YAML file, each cell isolated, executed locally or on Ray.

A sweep file lists blocks; each block is a kind (inference, finetune, eval) crossed with
lists of models, cards, backends, quants, recipes or task suites. A block may instead say
`from_claims: true` to get one cell per checkable claim (the card, quant, context and
recipe the claim names). Every cell runs through the same job code as the single
commands, so a cell's record is the record `bench run` would write; a failed cell is a
failed record and the sweep goes on. A cell whose record already exists for the same
configuration and the same bench commit is skipped unless `--force`.

Executors: `local` runs cells one after another (each in its own child process); `ray`
submits one Ray task per cell, asking for the GPUs the cell's card needs, on the cluster
at RAY_ADDRESS (or a local instance). Ray tasks write records into a temporary directory
and return them; the driver writes them into the results directory, so workers need no
shared filesystem.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.config.registry import Registry, read_yaml
from bench.errors import UserError
from bench.jobs.preflight import BITSANDBYTES_QUANTS, check_engine, choose_backend
from bench.launch.progress import current_display
from bench.records.schema import RunRecord
from bench.records.store import iter_records, write_record_or_fallback
from bench.units import gib

# Sweep files are checked against every engine bench knows; what this machine has installed is
# checked when a cell runs.
ALL_ENGINES = frozenset({"vllm", "bitsandbytes"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The most cells one sweep file may ask for, counted from its lists before any cell is made: a 3 KB
# file can name a matrix of 10^7 cells, which would take minutes just to list. Ten thousand runs of
# minutes each are weeks of machine time, more than any sweep meant to finish.
MAX_CELLS = 10_000


class RunOptions(_Strict):
    """A block's run settings, in the ranges `bench run`, `finetune` and `eval` accept (finite numbers:
    YAML's .inf and .nan are refused too)."""

    batch: int = Field(8, ge=1)
    prompt_len: int = Field(128, ge=1)
    output_len: int = Field(64, ge=2)
    context: int | None = Field(None, ge=2)
    iterations: int = Field(5, ge=1)
    min_duration: float = Field(2.0, ge=0, allow_inf_nan=False)
    steps: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0, allow_inf_nan=False)
    limit: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)


class SweepBlock(_Strict):
    kind: Literal["inference", "finetune", "eval"] = "inference"
    from_claims: bool = False
    models: list[str] = []
    gpus: list[str | None] = [None]
    backends: list[Literal["vllm", "transformers"]] = ["vllm"]
    quants: list[str] = ["bf16"]
    recipes: list[str] = []
    tasks: list[str] = []
    weights: Literal["real", "synthetic"] | None = None
    # The status every cell of the block must end with (a battery's check: a model that must not fit
    # a card expects oom); a cell that ends otherwise fails the sweep.
    expect: Literal["ok", "oom"] | None = None
    options: RunOptions = RunOptions()


class SweepSpec(_Strict):
    id: str
    description: str = ""
    device: Literal["cuda", "cpu"] = "cuda"
    # With one runner per card (`--only-gpu`), the card whose runner also takes the cells that
    # name no card (evals, uncapped runs); without it `--only-gpu` leaves those cells out.
    unpinned_runner: str | None = None
    matrix: list[SweepBlock]


@dataclass(frozen=True)
class Cell:
    kind: str
    model: str
    device: str
    gpu: str | None = None
    backend: str | None = None  # None: bench's choice for the quant (bench.jobs.preflight.choose_backend); fine-tunes: trl
    quant: str = "bf16"
    recipe: str | None = None
    tasks: tuple[str, ...] = ()
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    gpus_needed: int = 0
    expect: str | None = None

    @property
    def key(self) -> str:
        """What identifies the measurement: the run's settings, not the sweep's bookkeeping."""
        blob = json.dumps({k: v for k, v in asdict(self).items() if k not in ("gpus_needed", "expect")},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        what = self.recipe or ",".join(self.tasks) or f"{self.backend or 'auto'}/{self.quant}"
        return f"{self.kind} {self.model} {what}" + (f" on {self.gpu}" if self.gpu else "")


def _problems(err: ValidationError) -> str:
    """One ``field.path: problem`` per problem, as the registry's files report theirs."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: "
                     f"{'unknown field' if e['type'] == 'extra_forbidden' else e['msg']}" for e in err.errors())


def load_sweep(path: Path, registry: Registry) -> SweepSpec:
    raw = read_yaml(path)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{path}: {_problems(err)}") from None
    if (cells := count_cells(spec)) > MAX_CELLS:
        raise UserError(f"{path}: the matrix has {cells:,} cells, more than the {MAX_CELLS:,} a sweep may run; "
                        "split it into smaller sweeps")
    for i, block in enumerate(spec.matrix):
        for field_name, lookup in (("models", registry.model), ("gpus", registry.gpu), ("recipes", registry.recipe)):
            for j, name in enumerate(getattr(block, field_name)):
                if name is None:
                    continue
                try:
                    lookup(name)
                except UserError as err:
                    raise UserError(f"{path}: matrix.{i}.{field_name}.{j}: {err}") from None
        if block.kind == "finetune" and not block.recipes and not block.from_claims:
            raise UserError(f"{path}: matrix.{i}.recipes: a finetune block needs at least one recipe")
        if block.kind == "eval" and not block.tasks and not block.from_claims:
            raise UserError(f"{path}: matrix.{i}.tasks: an eval block needs at least one task or suite")
        if block.kind == "inference" and not block.from_claims:
            for backend in block.backends:
                for quant in block.quants:
                    try:
                        check_engine(backend, quant, spec.device, block.weights or "real", ALL_ENGINES)
                    except UserError as err:
                        raise UserError(f"{path}: matrix.{i}: {err}") from None
    if spec.unpinned_runner is not None:
        try:
            registry.gpu(spec.unpinned_runner)
        except UserError as err:
            raise UserError(f"{path}: unpinned_runner: {err}") from None
    return spec


def count_cells(spec: SweepSpec) -> int:
    """The cells the matrix's blocks ask for, from the sizes of their lists alone (duplicates counted, as
    `expand` would make them before merging). A `from_claims` block makes at most a few per claim of the
    registry, so it is not the file's to bound."""
    total = 0
    for block in spec.matrix:
        if block.from_claims:
            continue
        per_card = {"inference": len(block.backends) * len(block.quants), "finetune": len(block.recipes),
                    "eval": len(block.backends)}[block.kind]
        total += len(block.models) * len(block.gpus) * per_card
    return total


def expand(spec: SweepSpec, registry: Registry) -> list[Cell]:
    cells: dict[str, Cell] = {}
    for block in spec.matrix:
        new = _claim_cells(block, spec.device, registry) if block.from_claims else _block_cells(block, spec.device,
                                                                                               registry)
        for cell in new:
            cells.setdefault(cell.key, cell)  # claims often share a check: run it once
    return list(cells.values())


def _gpus_needed(registry: Registry, gpu: str | None, device: str) -> int:
    if device != "cuda":
        return 0
    return registry.gpu(gpu).device_count if gpu else 1


def _block_cells(block: SweepBlock, device: str, registry: Registry) -> list[Cell]:
    options = block.options.model_dump(exclude_none=True)
    cells = []
    for model in block.models:
        model_id = registry.model(model).id
        for gpu in block.gpus:
            gpu_id = registry.gpu(gpu).id if gpu else None
            common = dict(kind=block.kind, model=model_id, device=device, gpu=gpu_id, weights=block.weights,
                          options=options, gpus_needed=_gpus_needed(registry, gpu_id, device), expect=block.expect)
            if block.kind == "inference":
                cells += [Cell(backend=b, quant=q, **common) for b in block.backends for q in block.quants]
            elif block.kind == "finetune":
                cells += [Cell(recipe=registry.recipe(r).id, **common) for r in block.recipes]
            else:
                cells += [Cell(tasks=tuple(block.tasks), backend=b, **common) for b in block.backends]
    return cells


def _claim_cells(block: SweepBlock, device: str, registry: Registry) -> list[Cell]:
    """One cell per claim that a measurement can decide, at the conditions the claim names."""
    from bench.verdicts.decide import all_verdicts

    options = block.options.model_dump(exclude_none=True)
    cells = []
    for verdict in all_verdicts(registry):
        claim = registry.claim(verdict.claim_id)
        spec = registry.model(claim.subject)
        if spec.repo is None and block.weights != "synthetic":
            continue  # nothing to download: only a synthetic-weight block can measure a proxy shape
        gpu = claim.conditions.gpu
        needed = _gpus_needed(registry, gpu, device)
        if claim.kind == "inference-memory" and gpu and registry.gpu(gpu).device_class != "edge":
            quant = claim.conditions.quant or verdict.conditions.get("quant") or "bf16"
            backend = choose_backend(None, quant) if quant in BITSANDBYTES_QUANTS else block.backends[0]
            cell_options = {**options, **({"context": claim.conditions.context} if claim.conditions.context else {})}
            cells.append(Cell("inference", spec.id, device, gpu, backend, quant, weights=block.weights,
                              options=cell_options, gpus_needed=needed))
        elif claim.kind == "finetune-memory" and gpu and claim.conditions.recipe and block.weights != "synthetic":
            # (fine-tuning needs a checkpoint on disk: random weights of a 100B shape are not written out)
            cells.append(Cell("finetune", spec.id, device, gpu, recipe=claim.conditions.recipe,
                              weights=block.weights, options=options, gpus_needed=needed))
        elif claim.kind == "eval" and block.weights != "synthetic":
            for model in [claim.subject, *claim.conditions.compare_to]:
                if model in registry.models:
                    cells.append(Cell("eval", model, device, tasks=tuple(claim.conditions.tasks),
                                      backend=block.backends[0], options=options, gpus_needed=1 if device == "cuda"
                                      else 0))
    return cells


def arithmetic_refutation(cell: Cell, registry: Registry) -> str | None:
    """Why a cell's card cannot hold it whatever the engine does, or None.

    The exact lower bound (packed weights and the KV cache of one sequence at the run's
    length, or a fine-tune's frozen base and trainable state) already above the card's
    memory: measuring would download the checkpoint (hundreds of GB for the largest
    models) to learn what arithmetic already says. Random-weight cells download nothing,
    and their out-of-memory checks the cap itself, so they always run.
    """
    from bench.estimate.plan import PlanRequest, Subject, memory_for

    if cell.gpu is None or cell.kind == "eval":
        return None
    gpu, spec = registry.gpu(cell.gpu), registry.model(cell.model)
    if cell.weights == "synthetic" or spec.synthetic:
        return None
    subject = Subject.from_spec(spec)
    if cell.kind == "finetune":
        recipe = registry.recipe(cell.recipe or "")
        memory = memory_for(PlanRequest(subject, gpu, recipe=recipe), recipe.quant, recipe.sequence_length, gpu)
    else:
        o = cell.options
        length = max(o.get("prompt_len", 128) + o.get("output_len", 64), o.get("context") or 0)
        memory = memory_for(PlanRequest(subject, gpu), cell.quant, length, gpu)
    if memory.lower_bound_bytes <= gpu.budget_bytes:
        return None
    return f"lower bound {gib(memory.lower_bound_bytes)} > {gpu.id}'s {gib(gpu.budget_bytes)}"


def preflight_cell(cell: Cell, registry: Registry, installed: frozenset[str], visible_cards: int) -> None:
    """Every check a cell's run makes before it downloads or starts an engine, without doing either.

    Raises the run's own one-line UserError. `installed` and `visible_cards` describe the
    machine the cell is meant for (the GPU battery's: one card, no vLLM).
    """
    from bench.jobs.preflight import check_cards, select_checkpoint
    from bench.jobs.runner import resolve_model, weights_kind

    model = resolve_model(registry, cell.model)
    spec = model.spec
    assert spec is not None  # sweep files name registry models (load_sweep checks them)
    target = registry.gpu(cell.gpu) if cell.gpu else None
    weights = weights_kind(model, cell.weights)
    if cell.kind == "finetune":
        quant, backend = registry.recipe(cell.recipe or "").quant, "transformers"
    else:
        quant, backend = cell.quant, choose_backend(cell.backend, cell.quant)
    check_engine(backend, quant, cell.device, weights, installed)
    if cell.device == "cuda":
        check_cards(target, visible_cards)
    if weights == "real":
        select_checkpoint(spec, quant)


def select_runner_cells(spec: SweepSpec, cells: list[Cell], card: str) -> tuple[list[Cell], int]:
    """The cells one card's runner takes: its own, plus the card-less ones when it is the unpinned
    runner. Returns them and how many card-less cells no runner of this call takes."""
    unpinned = [c for c in cells if c.gpu is None]
    mine = [c for c in cells if c.gpu == card or (c.gpu is None and spec.unpinned_runner == card)]
    return mine, 0 if spec.unpinned_runner else len(unpinned)


def run_cell(cell: Cell, results_dir: Path, registry: Registry | None = None) -> RunRecord:
    """Run one cell through the same job code as the single commands; return its record."""
    from bench.config.registry import default_config_dir, load_registry

    registry = registry or load_registry()
    o = cell.options
    labels = {"sweep_cell": cell.key}
    if cell.kind == "inference":
        from bench.jobs.inference import run_inference

        return run_inference(registry, cell.model, gpu=cell.gpu, backend=cell.backend, quant=cell.quant,
                             weights=cell.weights, device=cell.device, batch=o.get("batch", 8),
                             prompt_len=o.get("prompt_len", 128), output_len=o.get("output_len", 64),
                             context=o.get("context"), min_iterations=o.get("iterations", 5),
                             min_duration_s=o.get("min_duration", 2.0), results_dir=results_dir,
                             timeout_s=o.get("timeout", 1800), labels=labels)
    if cell.kind == "finetune":
        from bench.jobs.finetune import run_finetune

        return run_finetune(registry, cell.model, recipe_name=cell.recipe or "", gpu=cell.gpu, steps=o.get("steps"),
                            learning_rate=o.get("learning_rate"), weights=cell.weights, dataset=None,
                            device=cell.device, results_dir=results_dir, timeout_s=o.get("timeout", 3600),
                            labels=labels)
    from bench.jobs.eval import run_eval

    return run_eval(registry, default_config_dir(), cell.model, tasks=list(cell.tasks), limit=o.get("limit"),
                    num_fewshot=None, backend=cell.backend, weights=cell.weights, device=cell.device,
                    results_dir=results_dir, timeout_s=o.get("timeout", 7200), labels=labels)


def _ray_cell(cell_fields: dict[str, Any]) -> str:
    """A Ray task: run the cell into a private directory and return the record's JSON."""
    cell = Cell(**{**cell_fields, "tasks": tuple(cell_fields["tasks"])})
    with tempfile.TemporaryDirectory(prefix="bench-cell-") as tmp:
        return run_cell(cell, Path(tmp)).model_dump_json()


@dataclass
class Progress:
    """Cells done (ok), out of memory (a result: the configuration does not fit), failed, skipped
    (a record from this commit exists), refuted (arithmetic already decides them: not run)."""

    total: int
    done: int = 0
    oom: int = 0
    failed: int = 0
    skipped: int = 0
    refuted: int = 0
    unexpected: list[str] = field(default_factory=list)  # cells that ended other than their block expects

    def show(self, running: int, last: str = "") -> None:
        finished = self.done + self.oom + self.failed + self.skipped + self.refuted
        current_display().cells(finished, self.total)  # the live display's count and estimate (bench.launch.progress)
        print(f"[{finished}/{self.total}] done {self.done}, out of memory {self.oom}, running {running}, "
              f"failed {self.failed}, skipped {self.skipped}, refuted {self.refuted}" + (f"  {last}" if last else ""),
              file=sys.stderr, flush=True)

    def count(self, record: RunRecord, cell: Cell) -> None:
        if cell.expect is not None and record.status != cell.expect:
            self.unexpected.append(f"{cell.label()}: expected {cell.expect}, got {record.status} ({record.id})")
        if record.status == "ok":
            self.done += 1
        elif record.status == "oom":
            self.oom += 1
        else:
            self.failed += 1


def done_cells(results_dir: Path, commit: str | None) -> set[str]:
    """Cell keys with a record from this bench commit (any status: a failure is a result too)."""
    return {r.details.get("labels", {}).get("sweep_cell") for r in iter_records(results_dir)
            if r.software.get("bench_commit") == commit} - {None}


def run_sweep(cells: list[Cell], results_dir: Path, executor: str, force: bool) -> Progress:
    from bench.config.registry import load_registry
    from bench.launch.environment import harness_commit

    registry = load_registry()
    done = set() if force else done_cells(results_dir, harness_commit())
    todo = [c for c in cells if c.key not in done]
    progress = Progress(total=len(cells), skipped=len(cells) - len(todo))
    measurable = []
    for cell in todo:
        if reason := arithmetic_refutation(cell, registry):
            progress.refuted += 1
            print(f"not run, refuted by arithmetic: {cell.label()} ({reason})", file=sys.stderr)
        else:
            measurable.append(cell)
    todo = measurable
    progress.show(0)
    if executor == "local":
        for cell in todo:
            progress.show(1, cell.label())
            progress.count(_safe_run(cell, results_dir, registry), cell)
    else:
        _run_on_ray(todo, results_dir, progress)
    progress.show(0, "finished")
    return progress


def _safe_run(cell: Cell, results_dir: Path, registry: Registry) -> RunRecord:
    try:
        return run_cell(cell, results_dir, registry)
    except UserError as err:  # a cell that cannot start (no GPU, no weights) is reported, the sweep goes on
        return _refused_record(cell, str(err), results_dir)


def _refused_record(cell: Cell, reason: str, results_dir: Path) -> RunRecord:
    """A cell that could not start still leaves a record saying why (status error)."""
    from datetime import datetime, timezone

    from bench.launch.environment import observed_hardware, software_versions
    from bench.records.schema import ModelRef, new_record

    started = datetime.now(timezone.utc)
    record = new_record(
        kind=cell.kind, status="error",
        error=f"the cell could not start: {reason}",
        model=ModelRef(id=cell.model, repo=None, revision=None, resolved_revision=None,
                       weights=cell.weights or "real"),
        config={"cell": asdict(cell)}, hardware={**observed_hardware("cpu"), "target": cell.gpu, "emulated": False},
        software=software_versions(), metrics={}, details={"labels": {"sweep_cell": cell.key}},
        started=started, duration_s=0.0)
    write_record_or_fallback(record, results_dir)
    return record


def _run_on_ray(cells: list[Cell], results_dir: Path, progress: Progress) -> None:
    import ray

    ray.init(ignore_reinit_error=True, log_to_driver=False)  # RAY_ADDRESS, when set, names the cluster
    remote = ray.remote(_ray_cell)
    pending = {remote.options(num_gpus=c.gpus_needed, num_cpus=1, max_retries=0).remote(asdict(c)): c
               for c in cells}
    while pending:
        finished, _ = ray.wait(list(pending), num_returns=1)
        cell = pending.pop(finished[0])
        try:
            record = RunRecord.model_validate_json(ray.get(finished[0]))
            write_record_or_fallback(record, results_dir)
        except Exception as err:  # the task itself died (worker lost, UserError in the cell): keep going
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            record = _refused_record(cell, reason, results_dir)
        progress.count(record, cell)
        progress.show(len(pending), cell.label())
