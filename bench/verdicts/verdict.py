"""The verdict: its five words (a contract, design section 6), its fields, and what a claim kind provides.

A leaf of the verdicts package: every claim kind's module builds its verdicts here and
registers one `ClaimKind` in `bench.verdicts.decide`, so a new kind is one new module and
one line in that table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.config.registry import Registry
from bench.config.specs import ClaimSpec

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord

HOLDS, FAILS, REFUTED, PLAUSIBLE, UNTESTED = "holds", "fails", "refuted-by-arithmetic", "plausible", "untested"
VERDICTS = (HOLDS, FAILS, REFUTED, PLAUSIBLE, UNTESTED)
# What each word means (design section 6), for the reports' legend.
MEANINGS = {
    HOLDS: "measured on the claimed hardware (or capped to its memory), traced from the real program at the real "
           "size, or a recorded fact, and within the claim",
    FAILS: "measured (or traced, or recorded) and outside the claim; an out-of-memory counts",
    REFUTED: "the estimate's lower bound (or an exact count) is already outside the claim",
    PLAUSIBLE: "the estimate is within the claim; nothing measured yet",
    UNTESTED: "no estimate applies and nothing measured, or arithmetic cannot decide",
}
# Weakest first: what a reader must see first, and what a quote of several parts is held to (its weakest part).
STRENGTH = {FAILS: 0, REFUTED: 1, UNTESTED: 2, PLAUSIBLE: 3, HOLDS: 4}


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
    meaning: str = ""  # the claim restated in measurable terms, shown beside its quote
    qualifier: str = ""  # what tempers the word, e.g. a margin inside the measurement's uncertainty
    # A quote that makes several claims is held to its weakest part: the parts (this claim among them, and what
    # no claim decides) and the quote's own verdict. A quote of one part has its claim's verdict and no parts.
    quote_verdict: str = ""
    quote_parts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def word(self) -> str:
        """The verdict as a reader should quote it: the word, and what tempers it."""
        return f"{self.verdict} ({self.qualifier})" if self.qualifier else self.verdict

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
    it (None when no record did); `deciding_number` is the figure it hinges on, "" when none;
    `restate` says what the claim asserts in measurable terms, where its YAML gives no `meaning`.
    """

    names: tuple[str, ...]  # the `kind` values of claims files this decides
    decide: Callable[[Registry, ClaimSpec, list[RunRecord]], Verdict]
    evidence_class: Callable[[Verdict, RunRecord | None], str]
    deciding_number: Callable[[Verdict, RunRecord | None], str]
    restate: Callable[[Registry, ClaimSpec], str]


def decisive_record(verdict: Verdict, records: Mapping[str, RunRecord]) -> RunRecord | None:
    """The record a verdict names as deciding (or its first evidence record), when it is at hand."""
    evidence = verdict.evidence or {}
    ids = [evidence.get("decisive_record")] + list(evidence.get("records") or [])
    return next((records[i] for i in ids if i and i in records), None)
