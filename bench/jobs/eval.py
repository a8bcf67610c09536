"""`bench eval`: lm-eval scores for a model on named suites or tasks, isolated, one record."""

from __future__ import annotations

import difflib
from dataclasses import asdict
from pathlib import Path

from bench.config.registry import Registry, read_yaml
from bench.errors import UserError
from bench.jobs.runner import check_device, cpu_kv_budget, execute, prepare_weights, resolve_model
from bench.scenarios.eval import EvalSettings

EVAL_CONTEXT = 2048


def expand_tasks(registry_dir: Path, names: list[str]) -> list[str]:
    """Suite names from configs/evals/suites.yaml become their tasks; other names pass through."""
    suites = (read_yaml(registry_dir / "evals" / "suites.yaml") or {}).get("suites", {})
    tasks: list[str] = []
    for name in names:
        for task in suites.get(name, {}).get("tasks", [name]):
            if task not in tasks:
                tasks.append(task)
    return tasks


def check_task_names(tasks: list[str]) -> None:
    """A task lm-eval does not know is bad input: refused here, before any model loads, not as a failed
    run. bench's own smoke tasks need no lookup; any other name costs one index of lm-eval's tasks
    (about 5 s of CPU), which a real eval's minutes dwarf."""
    from bench.evals.smoke_tasks import SMOKE_TASKS

    others = [t for t in tasks if t not in SMOKE_TASKS]
    if not others:
        return
    from lm_eval.tasks import TaskManager

    known = set(TaskManager().all_tasks)
    unknown = [t for t in others if t not in known]
    if unknown:
        close = {t: difflib.get_close_matches(t, known, n=1) for t in unknown}
        hints = "; ".join(f"{t} (did you mean {close[t][0]}?)" if close[t] else t for t in unknown)
        raise UserError(f"lm-eval knows no task {hints}; suites: configs/evals/suites.yaml")


def run_eval(registry: Registry, config_dir: Path, model_name: str, *, tasks: list[str], limit: int | None,
             num_fewshot: int | None, backend: str, weights: str | None, device: str, results_dir: Path,
             timeout_s: float, labels: dict[str, str] | None = None):
    model = resolve_model(registry, model_name)
    if weights == "synthetic" and not (model.spec and model.spec.synthetic):
        raise UserError("evals need trained weights: --weights synthetic gives random weights, whose scores "
                        "mean nothing (use --weights real)")
    check_device(device, None, model.id)
    expanded = expand_tasks(config_dir, tasks)
    if not expanded:
        raise UserError("--tasks names no task")
    check_task_names(expanded)
    spec_weights = prepare_weights(model, weights)
    cfg = model.architecture
    max_len = min(EVAL_CONTEXT, cfg.max_position_embeddings)
    settings = EvalSettings(
        model_path=spec_weights.path, backend=backend, device=device, tasks=expanded, limit=limit,
        num_fewshot=num_fewshot, max_model_len=max_len,
        kv_cache_bytes=cpu_kv_budget(cfg, max_len, EvalSettings.batch_size) if device == "cpu" else None)
    return execute("eval", "bench.scenarios.eval:measure", asdict(settings), model=model, weights=spec_weights,
                   device=device, gpu=None, config={"eval": asdict(settings), "suites": tasks},
                   results_dir=results_dir, timeout_s=timeout_s, labels=labels)
