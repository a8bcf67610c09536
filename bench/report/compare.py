"""What `bench compare` prints: the changes between two result sets as a terminal table, Markdown or JSON.

Numbers carry their units (ms, tok/s, GiB) and never wrap; a configuration is named short (model,
engine, quant, card), so numbers stay whole and only a reason wraps.
"""

from __future__ import annotations

import json
from collections import Counter

from bench.report import terminal
from bench.report.regressions import DECISIONS, Change, Thresholds, short_labels
from bench.units import gib

FORMATS = ("table", "markdown", "json")
_HEADERS = ["metric", "before", "after", "change", "decision", "why"]


def figure(value: float, unit: str) -> str:
    """A metric's value in the unit a reader thinks in."""
    if unit == "s":
        return terminal.seconds(value)
    if unit == "tokens/s":
        return f"{terminal.rate(value)} tok/s"
    if unit == "bytes":
        return gib(value, 2)
    return f"{value:,.2f} {unit}"


def _cells(change: Change) -> list[str]:
    return [change.metric, figure(change.before, change.unit), figure(change.after, change.unit),
            f"{change.relative:+.1%}", change.decision, change.reason]


def summary(changes: list[Change], limits: Thresholds) -> str:
    """One line: how many of each decision, under which thresholds."""
    counts = Counter(c.decision for c in changes)
    told = ", ".join(f"{d}: {counts[d]}" for d in DECISIONS if counts[d])
    return (f"{told} (thresholds: speed and latency {limits.speed_drop:.0%}, memory {limits.memory_growth:.0%};"
            f" Mann-Whitney U test at alpha {limits.alpha:g})")


def as_table(changes: list[Change], limits: Thresholds) -> str:
    """A block per configuration (its short name, then its metrics), and the summary line."""
    labels = short_labels(sorted({c.key for c in changes}))
    blocks = []
    for key in dict.fromkeys(c.key for c in changes):
        rows = [_cells(c) for c in changes if c.key == key]
        blocks.append(f"{labels[key]}\n{terminal.table(_HEADERS, rows)}")
    return "\n\n".join(blocks + [summary(changes, limits)])


def as_markdown(changes: list[Change], limits: Thresholds) -> str:
    """One GitHub-flavoured table (a pull request or issue comment), and the summary line."""
    labels = short_labels(sorted({c.key for c in changes}))
    lines = ["| configuration | " + " | ".join(_HEADERS) + " |", "|" + " --- |" * (len(_HEADERS) + 1)]
    for c in changes:
        cells = [labels[c.key], *_cells(c)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines + ["", summary(changes, limits)])


def as_json(changes: list[Change]) -> str:
    labels = short_labels(sorted({c.key for c in changes}))
    return json.dumps([c.to_json(labels[c.key]) for c in changes], indent=2)


def render(changes: list[Change], limits: Thresholds, fmt: str) -> str:
    if fmt == "json":
        return as_json(changes)
    return as_markdown(changes, limits) if fmt == "markdown" else as_table(changes, limits)
