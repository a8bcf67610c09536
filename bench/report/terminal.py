"""Plain-text tables and number formats for the terminal (no colour: pipe-safe, pasteable).

Tables fit the terminal's width (`COLUMNS` wins; a pipe or a file gets `FALLBACK_WIDTH`): free
text wraps at word boundaries, while a short cell (a number with its unit, a verdict word, a
status) and a kept column (an id a reader copies) are never split; only a word longer than a
column of free text may be (an address inside a sentence). When even that cannot fit,
each row is stacked: its kept cells on one line, the others beneath as `header: value`.
Numbers carry human units (ms, tokens/s, GiB) with as many digits as a decision needs, never
in exponent form; a missing value reads "-".
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from bench.records.stats import percentile

FALLBACK_WIDTH = 120  # output to a pipe or a file: a review comment's width
_GAP = "  "
ATOM = 20  # a cell this short is one unit: "1,234.5 tokens/s", "refuted-by-arithmetic", "0.750 ± 0.100"
MIN_TEXT = 24  # the narrowest a column of free text may get before the table is stacked instead
_STACK_INDENT = "    "


def terminal_width() -> int:
    """The width to lay text out in, read when a table is drawn (so `COLUMNS=80 bench ...` is honoured)."""
    return shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns


def __getattr__(name: str) -> Any:
    """`terminal.WIDTH` for callers that wrap text themselves: the terminal's width at the time of reading."""
    if name == "WIDTH":
        return terminal_width()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None,
          keep: Sequence[int] = (0,)) -> str:
    """Aligned columns under a dashed rule, fitted to `width` (default: the terminal's).

    Columns in `keep` (by default the first: an id a reader copies) are never wrapped; free text
    wraps at word boundaries; short cells never wrap. A `None` cell shows as "-".
    """
    width = width or terminal_width()
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    columns = list(zip(*cells))
    natural = [max(len(c) for c in column) for column in columns]
    floor = [natural[i] if i in keep else _floor(column) for i, column in enumerate(columns)]
    if sum(floor) + len(_GAP) * (len(headers) - 1) > width:
        return _stacked(cells, [i for i in range(len(headers)) if i in keep], width)
    widths = _fit(natural, floor, [_typical(column[1:]) for column in columns], width)
    lines = []
    for n, row in enumerate(cells):
        wrapped = [_wrap(c, w, split_words=True) for c, w in zip(row, widths)]
        for k in range(max(len(w) for w in wrapped)):
            parts = [(w[k] if k < len(w) else "").ljust(cw) for w, cw in zip(wrapped, widths)]
            lines.append(_GAP.join(parts).rstrip())
        if n == 0:
            lines.append(_GAP.join("-" * w for w in widths))
    return "\n".join(lines)


def _wrap(text: str, width: int, indent: str = "", later: str = "", split_words: bool = False) -> list[str]:
    """Lines of `text` broken at spaces, except inside a figure (`_GLUE`); a word longer than a line stays whole
    unless `split_words`."""
    lines = textwrap.wrap(_GLUE.sub(_NBSP, text), max(width, 1), initial_indent=indent, subsequent_indent=later,
                          break_long_words=split_words, break_on_hyphens=False) or [indent]
    return [line.replace(_NBSP, " ") for line in lines]


# The spaces that belong to a figure: a number and its unit, a score and its error, a loss and where it went.
# Held by a no-break space while text wraps (textwrap breaks at ASCII whitespace only), then given back.
_UNITS = "µs|ms|s|GiB|GB|MiB|tokens/s|tok/s|requests/s"
_GLUE = re.compile(rf" (?=[±→] )|(?<= [±→]) |(?<=\d) (?=(?:{_UNITS})(?:\W|$))")
_NBSP = "\u00a0"


def _floor(column: Sequence[str]) -> int:
    """The narrowest a column may get: its widest short cell and header word, and `MIN_TEXT` once it holds
    free text, so that only a word longer than that (an address, an id inside a sentence) is ever split."""
    header, cells = column[0], column[1:]
    unit = max([0] + [len(w) for w in header.split()] + [len(c) for c in cells if len(c) <= ATOM])
    natural = max(len(c) for c in column)
    return unit if all(len(c) <= ATOM for c in cells) else max(unit, min(natural, MIN_TEXT))


def _typical(cells: Sequence[str]) -> float:
    """A column's mean cell length (at least 1): how much it gains from room, unlike its one longest cell."""
    return max(sum(len(c) for c in cells) / max(len(cells), 1), 1.0)


def _fit(natural: list[int], floor: list[int], typical: list[float], width: int) -> list[int]:
    """Share the room above the floors in proportion to each column's typical cell, none above its natural width.

    A column of long reasons keeps more room than one whose cells are mostly short with one long outlier (an
    evidence class); room a column cannot use goes to the others.
    """
    room = width - len(_GAP) * (len(natural) - 1) - sum(floor)
    if sum(natural) - sum(floor) <= room:
        return list(natural)
    widths = list(floor)
    growing = {i for i, (n, f) in enumerate(zip(natural, floor)) if n > f}
    while growing:
        weight = sum(typical[i] for i in growing)
        share = {i: room * typical[i] / weight for i in growing}
        full = {i for i in growing if widths[i] + share[i] >= natural[i]}
        if not full:
            for i in growing:
                widths[i] += int(share[i])
            break
        for i in full:
            room -= natural[i] - widths[i]
            widths[i] = natural[i]
        growing -= full
    return widths


def _stacked(cells: list[list[str]], keep: list[int], width: int) -> str:
    """A table too wide for the terminal, one block per row: the kept cells aligned on the first line,
    the other cells beneath as `header: value` items, packed and wrapped at word boundaries (a missing
    value is left out: the block names what is there)."""
    headers, rows = cells[0], cells[1:]
    kept_widths = [max(len(row[i]) for row in cells) for i in keep]
    lines = [_GAP.join(headers[i].ljust(w) for i, w in zip(keep, kept_widths)).rstrip(),
             _GAP.join("-" * w for w in kept_widths)]
    for row in rows:
        lines.append(_GAP.join(row[i].ljust(w) for i, w in zip(keep, kept_widths)).rstrip())
        items = [f"{headers[i]}: {cell}" for i, cell in enumerate(row) if i not in keep and cell not in ("", "-")]
        lines += _pack(items, width)
    return "\n".join(lines)


def _pack(items: list[str], width: int) -> list[str]:
    """`items` joined by "; " into indented lines of `width`; an item starts a new line rather than split,
    unless it is longer than a line on its own."""
    lines: list[str] = []
    line = ""
    for item in items:
        if line and len(line) + 2 + len(item) <= width:
            line += "; " + item
            continue
        if line:
            lines.append(line)
        if len(_STACK_INDENT) + len(item) <= width:
            line = _STACK_INDENT + item
        else:
            *full, line = _wrap(item, width, _STACK_INDENT, _STACK_INDENT + "  ")
            lines += full
    return lines + ([line] if line else [])


def fill(text: str, indent: str = "") -> str:
    """A line of free text (an error, a note, a summary) wrapped to the terminal at word boundaries, its
    continuation indented two more spaces."""
    return "\n".join(_wrap(text, terminal_width(), indent, indent + "  "))


def billions(n: float) -> str:
    return f"{n / 1e9:,.2f}B" if n >= 1e8 else f"{n / 1e6:,.2f}M"


def rate(n: float | None) -> str:
    return "-" if n is None else f"{n:,.1f}"


def number(x: float | None, digits: int = 3) -> str:
    """A plain figure with `digits` significant digits (more above 10**digits), never in exponent form;
    integers whole, with thousands separators."""
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if not math.isfinite(x):
        return str(x)
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0) if x else 0
    return f"{x:,.{decimals}f}"


def mark(flag: bool | None) -> str:
    """✓ or ✗ for a check, "-" when the record cannot tell (the run ended before it)."""
    return "-" if flag is None else "✓" if flag else "✗"


def timestamp(iso: str | None) -> str:
    """`2026-11-23 22:51 UTC` from an ISO 8601 time: the minute is what a reader compares."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


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
    """The p10-p90 range and the sample count of a measurement ("" for a single value); "to", not a dash,
    between the ends, since either may be negative."""
    if not samples or len(samples) < 2:
        return f"n={len(samples)}" if samples else ""
    return f"p10-p90 {fmt(percentile(samples, 10))} to {fmt(percentile(samples, 90))}, n={len(samples)}"


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
