"""How `bench verdicts` reads in the terminal: totals per verdict word first, then the claims a reader asked for.

Two hundred lines of claims say little until they are counted, so the counts come first; the
filters (verdict words, a model, a page) narrow the table and the JSON alike.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable

from bench.config.registry import Registry
from bench.errors import UserError, unknown_name_error
from bench.report import terminal
from bench.verdicts.verdict import VERDICTS, Verdict


def verdict_words(values: Iterable[str]) -> set[str]:
    """The verdict words of repeated and comma-separated `--verdict` values; an unknown word is bad input, answered
    with all five (few enough to list)."""
    words = {w.strip() for value in values for w in value.split(",") if w.strip()}
    for word in sorted(words):
        if word not in VERDICTS:
            raise UserError(f"unknown verdict {word!r}; choose {', '.join(VERDICTS)}")
    return words


def page_source(registry: Registry, page: str) -> str:
    """The seed file of a page named by its claims file's name (as reports name it) or by the seed file itself."""
    by_name = {slug: source for source, slug in registry.claim_slugs.items()}
    by_name.update({source: source for source in registry.claim_slugs})
    if page not in by_name:
        raise unknown_name_error("page", page, by_name)
    return by_name[page]


def select(verdicts: list[Verdict], words: set[str], model: str | None, source: str | None) -> list[Verdict]:
    """The verdicts with one of `words` (all when empty), about `model`, from the page `source` (each when None)."""
    return [v for v in verdicts if (not words or v.verdict in words) and model in (None, v.subject)
            and source in (None, v.source)]


def totals_line(shown: list[Verdict], total: int) -> str:
    """`83 claims: 42 holds, 16 fails, ...`, every word counted (a zero is news too), in the contract's order,
    wrapped to the terminal."""
    counts = Counter(v.verdict for v in shown)
    which = f"{len(shown)} claims" if len(shown) == total else f"{len(shown)} of {total} claims"
    line = f"{which}: " + ", ".join(f"{counts[word]} {word}" for word in VERDICTS)
    return textwrap.fill(line, terminal.terminal_width(), subsequent_indent="  ", break_on_hyphens=False)


def verdicts_table(verdicts: list[Verdict]) -> str:
    """The claim, its verdict word, the evidence class and why (with what tempers the word, such as a narrow
    margin), the claim and its word never wrapped.

    A registry fact's source is a long address: `--json` and `bench cite` carry it, the table names the class.
    """
    if not verdicts:
        return "no claim matches"
    return terminal.table(["claim", "verdict", "evidence", "why"],
                          [[v.claim_id, v.verdict, v.evidence_class.split(" (source:")[0], _why(v)] for v in verdicts],
                          keep=(0, 1))


def _why(v: Verdict) -> str:
    """The reason, what tempers the word, and for a quote of several parts the whole quote's verdict."""
    parts = [v.reason] + ([v.qualifier] if v.qualifier else [])
    if v.quote_parts:
        unchecked = [p["meaning"] for p in v.quote_parts if not p["claim_id"]]
        parts.append(f"the quote as a whole: {v.quote_verdict} (weakest of {len(v.quote_parts)} parts"
                     + "".join(f"; not checked: {u}" for u in unchecked) + ")")
    return "; ".join(parts)
