"""Static plots for the reports (matplotlib, no display, PNG files that work offline)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GIB = 2**30


def _paired_bars(rows: list[dict], upper: tuple[str, str, str], lower: tuple[str, str, str], scale: float = 1):
    """A horizontal chart with two bars per row: (key, label, colour) above and below; missing values skipped."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    for offset, (key, label, colour) in ((0.2, upper), (-0.2, lower)):
        present = [(i, r[key] / scale) for i, r in enumerate(rows) if r.get(key)]
        if present:
            ax.barh([i + offset for i, _ in present], [v for _, v in present], height=0.4, label=label, color=colour)
    ax.set_yticks(list(range(len(rows))), [r["label"] for r in rows], fontsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return fig, ax


def memory_vs_budget(rows: list[dict], path: Path, title: str) -> Path | None:
    """One bar per claim: the estimate (and the measured peak, where a run exists) against the card's budget."""
    if not rows:
        return None
    fig, ax = _paired_bars(rows, ("estimate", "estimate", "#8da0cb"), ("measured", "measured peak", "#fc8d62"),
                           scale=GIB)
    for i, r in enumerate(rows):
        ax.plot([r["budget"] / GIB] * 2, [i - 0.45, i + 0.45], color="black", linewidth=2)
    ax.set_xscale("log")
    ax.set_xlabel("GiB (log scale); black tick = the card's memory")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def speed_vs_roofline(rows: list[dict], path: Path, title: str) -> Path | None:
    """Measured decode tokens/s at batch 1 beside the bandwidth roofline of the card it ran on."""
    if not rows:
        return None
    fig, ax = _paired_bars(rows, ("roofline", "roofline", "#cccccc"), ("measured", "measured", "#66c2a5"))
    ax.set_xlabel("decode tokens/s at batch 1")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


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
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
