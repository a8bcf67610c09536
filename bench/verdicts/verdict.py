"""The verdict: its five words (a contract, design section 6), its fields, and what a claim kind provides.

A leaf of the verdicts package: every claim kind's module builds its verdicts here and
registers one `ClaimKind` in `bench.verdicts.decide`, so a new kind is one new module and
one line in that table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec
from bench.records.schema import RunRecord

HOLDS, FAILS, REFUTED, PLAUSIBLE, UNTESTED = "holds", "fails", "refuted-by-arithmetic", "plausible", "untested"
VERDICTS = (HOLDS, FAILS, REFUTED, PLAUSIBLE, UNTESTED)


@dataclass
class Verdict:
    claim_id: str
    source: str
    subject: str
    kind: str
    quote: str
    verdict: str
    reason: str
    conditions: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    would_change: str = ""
    evidence_class: str = ""  # in words (bench.verdicts.evidence), filled by all_verdicts

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def new_verdict(claim: ClaimSpec, word: str, reason: str, **kw: Any) -> Verdict:
    """A verdict on `claim`; its source page is filled by `verdict_for`, which knows it."""
    return Verdict(claim_id=claim.id, source="", subject=claim.subject, kind=claim.kind, quote=claim.quote,
                   verdict=word, reason=reason, **kw)


@dataclass(frozen=True)
class ClaimKind:
    """How one kind of claim is decided and shown.

    `decide` weighs arithmetic (or the registry's facts) and the records in one pass;
    `evidence_class` names, in words, what the verdict rests on, given the record that decided
    it (None when no record did); `deciding_number` is the figure it hinges on, "" when none.
    """

    names: tuple[str, ...]  # the `kind` values of claims files this decides
    decide: Callable[[Registry, ClaimSpec, list[RunRecord]], Verdict]
    evidence_class: Callable[[Verdict, RunRecord | None], str]
    deciding_number: Callable[[Verdict, RunRecord | None], str]


def decisive_record(verdict: Verdict, records: Mapping[str, RunRecord]) -> RunRecord | None:
    """The record a verdict names as deciding (or its first evidence record), when it is at hand."""
    evidence = verdict.evidence or {}
    ids = [evidence.get("decisive_record")] + list(evidence.get("records") or [])
    return next((records[i] for i in ids if i and i in records), None)
