"""Plain-text tables and number formats for the terminal (no colour: pipe-safe, pasteable).

Tables fit `WIDTH` columns: the widest columns wrap onto continuation lines rather than
running off a terminal or a review comment. Numbers carry human units (ms, tokens/s,
GiB) with as many digits as a decision needs.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from bench.records.stats import percentile

WIDTH = 120
_GAP = "  "


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int = WIDTH,
          keep: Sequence[int] = (0,)) -> str:
    """Aligned columns under a dashed rule; cells of the widest columns wrap so a line fits `width`.

    Columns in `keep` (by default the first: an id a reader copies) are never wrapped.
    """
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = _fit([max(len(row[i]) for row in cells) for i in range(len(headers))], width, set(keep))
    lines = []
    for n, row in enumerate(cells):
        wrapped = [textwrap.wrap(c, w, break_on_hyphens=False) or [""] for c, w in zip(row, widths)]
        for k in range(max(len(w) for w in wrapped)):
            parts = [(w[k] if k < len(w) else "").ljust(cw) for w, cw in zip(wrapped, widths)]
            lines.append(_GAP.join(parts).rstrip())
        if n == 0:
            lines.append(_GAP.join("-" * w for w in widths))
    return "\n".join(lines)


def _fit(widths: list[int], width: int, keep: set[int]) -> list[int]:
    """Share the line among columns not kept in proportion to what each holds beyond 8 characters.

    A long column (a reason) keeps more room than a medium one (an evidence class), and no
    column is cut below 8 characters or its natural width.
    """
    floor = [w if i in keep else min(w, 8) for i, w in enumerate(widths)]
    room = width - len(_GAP) * (len(widths) - 1) - sum(floor)
    excess = [w - f for w, f in zip(widths, floor)]
    if sum(excess) <= room:
        return list(widths)
    share = max(room, 0) / sum(excess)
    return [f + int(e * share) for f, e in zip(floor, excess)]


def billions(n: float) -> str:
    return f"{n / 1e9:,.2f}B" if n >= 1e8 else f"{n / 1e6:,.2f}M"


def rate(n: float | None) -> str:
    return "-" if n is None else f"{n:,.1f}"


def seconds(s: float | None) -> str:
    """A duration in the unit that keeps three significant digits readable: µs, ms or s."""
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:,.0f} µs"
    if s < 1:
        return f"{_three_digits(s * 1e3)} ms"
    return f"{_three_digits(s)} s"


def _three_digits(x: float) -> str:
    """Three significant digits with trailing zeros kept (1.20, 45.0, 788), commas above 999."""
    decimals = 2 if x < 10 else 1 if x < 100 else 0
    return f"{x:,.{decimals}f}"


def spread(samples: Sequence[float] | None, fmt=seconds) -> str:
    """The p10-p90 range and the sample count of a measurement ("" for a single value)."""
    if not samples or len(samples) < 2:
        return f"n={len(samples)}" if samples else ""
    return f"p10-p90 {fmt(percentile(samples, 10))} - {fmt(percentile(samples, 90))}, n={len(samples)}"


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
