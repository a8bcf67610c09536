"""Summary statistics over raw samples (kept in records so they can be recomputed)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


@dataclass(frozen=True)
class RankTest:
    """A two-sided Mann-Whitney U test of two sets of samples: U of the first set, its p-value, and how it was got."""
    u: float
    p_value: float
    method: str  # "exact" (the permutation distribution) or "normal" (approximation with a tie correction)


# Beyond this many pairs (about 50 samples a side) the exact distribution is slow to build and the
# normal approximation is accurate to well under a percent of p.
_EXACT_PAIRS_AT_MOST = 2500


def mann_whitney(a: Sequence[float], b: Sequence[float], method: str = "auto") -> RankTest:
    """Whether `b` is shifted from `a`, from ranks alone: no assumption of normal timings, robust to a stray
    outlier (a page fault, a compile). `auto`: exact without ties and for small sets; else (or `normal`) the
    normal approximation with tie and continuity corrections (as scipy's default)."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        raise ValueError("no samples")
    values = [*a, *b]
    ranks = _ranks(values)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    tied = [t for t in Counter(values).values() if t > 1]
    if method == "auto" and not tied and n1 * n2 <= _EXACT_PAIRS_AT_MOST:
        counts = _u_counts(n1, n2)
        low, high = sum(counts[: int(u) + 1]), sum(counts[int(u):])
        return RankTest(u, min(1.0, 2 * min(low, high) / math.comb(n1 + n2, n1)), "exact")
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - sum(t**3 - t for t in tied) / (n * (n - 1)))
    if variance <= 0:  # every sample equal: nothing tells the sets apart
        return RankTest(u, 1.0, "normal")
    z = max(0.0, abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return RankTest(u, math.erfc(z / math.sqrt(2)), "normal")


def smallest_p_value(n1: int, n2: int) -> float:
    """The lowest two-sided p a rank test can reach with these counts (the two sets not overlapping at all):
    when it is above the significance level, no change, however large, can be told from noise."""
    return min(1.0, 2 / math.comb(n1 + n2, n1))


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _u_counts(n1: int, n2: int) -> list[int]:
    """How many of the C(n1+n2, n1) orderings give each U = 0..n1*n2: the coefficients of the Gaussian
    binomial prod_i (1 - q^(n2+i)) / (1 - q^i), built as power series cut at degree n1*n2."""
    size = n1 * n2 + 1
    counts = [1] + [0] * (size - 1)
    for i in range(1, n1 + 1):
        for k in range(size - 1, n2 + i - 1, -1):  # times (1 - q^(n2+i))
            counts[k] -= counts[k - n2 - i]
        for k in range(i, size):  # divided by (1 - q^i)
            counts[k] += counts[k - i]
    return counts
