"""Static plots for the reports (matplotlib, no display, PNG files that work offline).

Every plot writes the numbers it draws beside it (`<plot>.csv`, one row per bar or point, raw
units), so a reader can check a bar against its record and a test can hold each figure to its
source.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GIB = 2**30


def _paired_bars(rows: list[dict], upper: tuple[str, str, str], lower: tuple[str, str, str], scale: float = 1,
                 value_format: str = "{:,.1f}"):
    """A horizontal chart on a linear axis with two labelled bars per row: (key, label, colour) above and
    below; missing values skipped."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    for offset, (key, label, colour) in ((0.2, upper), (-0.2, lower)):
        present = [(i, r[key] / scale) for i, r in enumerate(rows) if r.get(key)]
        if present:
            ax.barh([i + offset for i, _ in present], [v for _, v in present], height=0.4, label=label, color=colour)
    ax.set_yticks(list(range(len(rows))), [r["label"] for r in rows], fontsize=7)
    for container in ax.containers:
        ax.bar_label(container, fmt=value_format, fontsize=6, padding=2)
    ax.margins(x=0.15)  # room for the value labels
    ax.legend(fontsize=7, loc="lower right")
    return fig, ax


def memory_vs_budget(rows: list[dict], path: Path, title: str) -> Path | None:
    """One bar per claim: the estimate (and the measured peak, where a run exists) against the card's budget."""
    if not rows:
        return None
    fig, ax = _paired_bars(rows, ("estimate", "estimate", "#8da0cb"), ("measured", "measured (llama.cpp buffers, else peak)", "#fc8d62"),
                           scale=GIB, value_format="{:,.1f} GiB")
    for i, r in enumerate(rows):
        ax.plot([r["budget"] / GIB] * 2, [i - 0.45, i + 0.45], color="black", linewidth=2)
    ax.set_xlabel("GiB (linear); black tick = the budget judged against")
    ax.set_title(title, fontsize=9)
    return _save(fig, path, rows)


def speed_vs_roofline(rows: list[dict], path: Path, title: str) -> Path | None:
    """Measured decode tokens/s at batch 1 beside the bandwidth roofline of the card it ran on."""
    if not rows:
        return None
    fig, ax = _paired_bars(rows, ("roofline", "roofline", "#cccccc"), ("measured", "measured", "#66c2a5"),
                           value_format="{:,.1f} tok/s")
    ax.set_xlabel("decode tokens/s at batch 1")
    ax.set_title(title, fontsize=9)
    return _save(fig, path, rows)


def latency_and_throughput(rows: list[dict], path: Path, title: str) -> Path | None:
    """Per model and backend: TTFT and inter-token latency p50 (ms), and decode and batch throughput (tok/s),
    side by side on linear axes with their values written on the bars."""
    if not rows:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 * len(rows) + 1.6), sharey=True)
    y = list(range(len(rows)))
    for ax, series, unit in ((left, (("ttft_ms", "TTFT p50", "#8da0cb"), ("itl_ms", "ITL p50", "#fc8d62")), "ms"),
                             (right, (("decode", "decode, batch 1", "#66c2a5"), ("batch", "batch output", "#a6d854")),
                              "tokens/s")):
        for offset, (key, label, colour) in zip((0.2, -0.2), series):
            present = [(i, r[key]) for i, r in enumerate(rows) if r.get(key) is not None]
            if present:
                bars = ax.barh([i + offset for i, _ in present], [v for _, v in present], height=0.4, label=label,
                               color=colour)
                ax.bar_label(bars, fmt="{:,.1f}", fontsize=6, padding=2)
        ax.margins(x=0.2)
        ax.set_xlabel(unit)
        ax.legend(fontsize=7, loc="lower right")
    left.set_yticks(y, [r["label"] for r in rows], fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path, rows)


def scores_with_errors(rows: list[dict], path: Path, title: str) -> Path | None:
    """Eval scores with their standard errors as error bars."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    y = list(range(len(rows)))
    ax.errorbar([r["value"] for r in rows], y, xerr=[r["stderr"] for r in rows], fmt="o", capsize=3,
                color="#e78ac3")
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (error bars: one standard error)")
    ax.set_title(title, fontsize=9)
    return _save(fig, path, rows)


def loss_curves(rows: list[dict], path: Path, title: str) -> Path | None:
    """One line per run and series (loss; a preference run's chosen and rejected rewards), by step."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for key in dict.fromkeys((r["label"], r["series"]) for r in rows):
        points = [r for r in rows if (r["label"], r["series"]) == key]
        ax.plot([p["step"] for p in points], [p["value"] for p in points], marker="o", markersize=3,
                label=f"{key[0]}: {key[1]}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("value")
    ax.legend(fontsize=6, loc="upper right")
    ax.set_title(title, fontsize=9)
    return _save(fig, path, rows)


def _save(fig, path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    _write_data(rows, path.with_suffix(".csv"))
    return path


def _write_data(rows: list[dict], path: Path) -> None:
    """The plot's rows as CSV, columns in first-seen order; a label a spreadsheet would run is kept as text."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v) for k, v in row.items()})


def latency_vs_throughput(curves: list[dict], path: Path, title: str) -> Path | None:
    """Serving curves: each load level's output tokens/s against its TTFT and TPOT medians, one line
    per model and server, each point labelled with its level (c4: four concurrent requests)."""
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (ax, key, name) in ((axes[0], "ttft", "TTFT p50 (ms)"), (axes[1], "tpot", "TPOT p50 (ms)")):
        for curve in curves:
            points = [p for p in curve["points"] if p[key] is not None]
            line, = ax.plot([p["throughput"] for p in points], [p[key] * 1000 for p in points], marker="o",
                            label=curve["label"])
            for p in points:
                ax.annotate(p["level"], (p["throughput"], p[key] * 1000), fontsize=6, color=line.get_color())
        ax.set_xlabel("output tokens/s (all requests)")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path, [{"label": curve["label"], **point} for curve in curves for point in curve["points"]])
