"""Comparing two eval scores honestly: a gap inside the combined standard error is a tie.

Two scores a and b with standard errors sa and sb differ when |a - b| exceeds
sqrt(sa^2 + sb^2) (one combined standard error; bench states the rule rather than
dress it as a significance test). Both must come from the same task, metric, few-shot
count and limit, or they are not compared at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    value: float
    stderr: float


def compare(a: Score, b: Score) -> str:
    """'win' when a is above b by more than the combined error, 'loss' below, else 'tie'."""
    margin = math.sqrt(a.stderr ** 2 + b.stderr ** 2)
    if a.value - b.value > margin:
        return "win"
    if b.value - a.value > margin:
        return "loss"
    return "tie"


def primary_metric(task_scores: dict[str, float]) -> str | None:
    """The metric a comparison uses: acc, else exact_match, else the first with a stderr."""
    for name in ("acc", "acc_norm", "exact_match"):
        if name in task_scores and f"{name}_stderr" in task_scores:
            return name
    for name in task_scores:
        if not name.endswith("_stderr") and f"{name}_stderr" in task_scores:
            return name
    return None
