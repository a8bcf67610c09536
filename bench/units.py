"""How byte counts are written for people: one formatter, so a number reads the same everywhere.

Verdict reasons, the terminal, the reports and citations all show memory in GiB (2**30
bytes, as CUDA and the engines report it) with thousands separators; the digits are the
caller's choice (tenths where an estimate decides, hundredths where a budget is close).
"""

from __future__ import annotations


def gib_number(n: float, digits: int = 1) -> str:
    """`n` bytes in GiB without the unit, for a column whose header names it."""
    return f"{n / 2**30:,.{digits}f}"


def gib(n: float | None, digits: int = 1) -> str:
    """`n` bytes in GiB with the unit; "-" for a value that is absent."""
    return "-" if n is None else f"{gib_number(n, digits)} GiB"
