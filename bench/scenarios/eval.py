"""The eval measurement: lm-eval's `simple_evaluate` on one backend, in the isolated child.

Task data is resolved before any model is loaded, so a task whose data cannot be
reached (offline, or a gated data set) fails fast with one line naming the task.
Scores keep lm-eval's numbers and standard errors, split into metric and filter
instead of lm-eval's glued `"acc,none"` keys.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.evals.smoke_tasks import write_smoke_tasks
from bench.launch.environment import observed_hardware, software_versions
from bench.launch.progress import phase
from bench.scenarios.inference import metric


@dataclass(frozen=True)
class EvalSettings:
    model_path: str
    backend: str
    device: str
    tasks: list[str]
    limit: int | None = None
    num_fewshot: int | None = None
    batch_size: int = 8
    dtype: str = "bfloat16"
    max_model_len: int = 2048
    seed: int = 1234
    kv_cache_bytes: int | None = None


class TaskDataUnavailable(RuntimeError):
    """A task's data set cannot be loaded (offline, gated, or unknown): raised before any model loads."""


def _task_manager(tasks_dir: Path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(write_smoke_tasks(tasks_dir)))


def _check_task_data(tasks: list[str], manager: Any) -> None:
    """Load every task's data set now; name the task and its data when one is missing."""
    from lm_eval.tasks import get_task_dict

    for name in tasks:
        entry = manager.task_index.get(name)
        if entry is None:
            raise TaskDataUnavailable(f"task {name}: unknown to lm-eval {_lm_eval_version()}")
        try:
            get_task_dict([name], manager)
        except Exception as err:  # datasets raises many types for "not reachable"; the message is what helps
            data = (entry.cfg or {}).get("dataset_path", "?")
            raise TaskDataUnavailable(f"task {name}: data {data!r} is not reachable "
                                      f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def _model(s: EvalSettings):
    if s.backend == "vllm":
        from bench.evals.vllm_lm import BenchVLLM

        extra = {"kv_cache_memory_bytes": s.kv_cache_bytes, "enforce_eager": True} if s.device == "cpu" else {}
        return BenchVLLM(s.model_path, dtype=s.dtype, max_model_len=s.max_model_len, seed=s.seed, **extra)
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=s.model_path, dtype=s.dtype, device=s.device, batch_size=s.batch_size)


def split_scores(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """`{"acc,none": x, "acc_stderr,none": e}` -> `{"acc": x, "acc_stderr": e}` (filter kept when not `none`)."""
    scores: dict[str, dict[str, float]] = {}
    for task, values in results.items():
        out = {}
        for key, value in values.items():
            if "," not in key or not isinstance(value, (int, float)):
                continue
            name, filter_name = key.split(",", 1)
            out[name if filter_name == "none" else f"{name}[{filter_name}]"] = float(value)
        scores[task] = out
    return scores


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    from lm_eval import simple_evaluate

    s = EvalSettings(**settings)
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tasks_dir:
        phase("loading the task data")
        manager = _task_manager(Path(tasks_dir))
        _check_task_data(s.tasks, manager)
        phase("loading the model")
        model = _model(s)
        phase(f"evaluating {len(s.tasks)} task(s)" + (f", {s.limit} documents each" if s.limit else ""))
        out = simple_evaluate(model=model, tasks=s.tasks, task_manager=manager, limit=s.limit,
                              num_fewshot=s.num_fewshot, random_seed=s.seed, numpy_random_seed=s.seed,
                              torch_random_seed=s.seed, fewshot_random_seed=s.seed, log_samples=False)
    scores = split_scores(out["results"])
    return {
        "metrics": {
            "scores": metric(scores, "score"),
            "limit": metric(s.limit, "docs"),
            "num_fewshot": metric(s.num_fewshot, "shots"),
        },
        "engine": {"engine": f"lm-eval/{s.backend}", "lm_eval_version": out.get("lm_eval_version"),
                   "task_versions": out.get("versions"), "n_shot": out.get("n-shot"),
                   "n_samples": out.get("n-samples"), "higher_is_better": out.get("higher_is_better"),
                   "seed": s.seed, "batch_size": s.batch_size, "dtype": s.dtype},
        "hardware": observed_hardware(s.device),
        "software": software_versions(),
    }
