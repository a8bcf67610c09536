"""Claims x estimates x records -> verdicts, through one table of claim kinds.

Verdict words are a contract (design section 6). Each kind of claim is decided in its own
module, which says how in its docstring: memory and fine-tune memory (:mod:`.memory`),
parameter counts (:mod:`.params`), registry facts (:mod:`.facts`), speed (:mod:`.speed`),
"runs in llama.cpp" (:mod:`.runtime`), responsive chat (:mod:`.responsive`) and eval scores
(:mod:`.eval_scores`). Measured records override arithmetic wherever a kind admits them
(precedence in :mod:`bench.verdicts.evidence`). A new kind is a new module with a `KIND`,
listed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bench.config.registry import Registry
from bench.config.specs import ClaimSource, ClaimSpec
from bench.verdicts import eval_scores, facts, memory, params, responsive, runtime, speed
from bench.verdicts.evidence import NOT_CHECKED
from bench.verdicts.verdict import STRENGTH, UNTESTED, ClaimKind, Verdict, decisive_record

if TYPE_CHECKING:  # records are named in annotations only: the quick commands load no record schema
    from bench.records.schema import RunRecord

_KIND_MODULES = (memory, params, facts, speed, runtime, responsive, eval_scores)
KINDS: dict[str, ClaimKind] = {name: module.KIND for module in _KIND_MODULES for name in module.KIND.names}


def verdict_for(registry: Registry, source: ClaimSource, claim: ClaimSpec,
                records: Sequence[RunRecord] = ()) -> Verdict:
    verdict = KINDS[claim.kind].decide(registry, claim, list(records))
    verdict.source = source.source
    return verdict


def all_verdicts(registry: Registry, records: Sequence[RunRecord] = ()) -> list[Verdict]:
    pairs = [(verdict_for(registry, source, claim, records), claim) for source, claim in registry.claims()]
    by_id = {r.id: r for r in records}
    for verdict, claim in pairs:
        verdict.evidence_class = verdict_class(verdict, by_id)
        verdict.meaning = claim.meaning or KINDS[claim.kind].restate(registry, claim)
    _hold_quotes_to_their_weakest_part(pairs)
    return [verdict for verdict, _ in pairs]


def _hold_quotes_to_their_weakest_part(pairs: list[tuple[Verdict, ClaimSpec]]) -> None:
    """A quote that makes several claims ("fits a 24GB card and is responsive, in under five minutes") is
    decided part by part: the claims quoting it on the same page by the same speaker, and the parts no claim
    decides (`unchecked`, untested by definition). The quote's own verdict is its weakest part's."""
    quotes: dict[tuple[str, str, str], list[tuple[Verdict, ClaimSpec]]] = defaultdict(list)
    for verdict, claim in pairs:
        quotes[(verdict.source, claim.speaker, claim.quote)].append((verdict, claim))
    for group in quotes.values():
        parts = [{"claim_id": v.claim_id, "meaning": v.meaning, "verdict": v.verdict, "qualifier": v.qualifier,
                  "evidence_class": v.evidence_class} for v, _ in group]
        unchecked = dict.fromkeys(text for _, claim in group for text in claim.unchecked)
        parts += [{"claim_id": None, "meaning": text, "verdict": UNTESTED, "qualifier": "",
                   "evidence_class": NOT_CHECKED} for text in unchecked]
        weakest = min(parts, key=lambda part: STRENGTH[part["verdict"]])["verdict"]
        for verdict, _ in group:
            verdict.quote_verdict = weakest
            verdict.quote_parts = parts if len(parts) > 1 else []


def verdict_class(verdict: Verdict, records: Mapping[str, RunRecord]) -> str:
    """The evidence class of a verdict, in words (a registry fact names its source)."""
    return KINDS[verdict.kind].evidence_class(verdict, decisive_record(verdict, records))


def deciding_number(verdict: Verdict, records: Mapping[str, RunRecord]) -> str:
    """The number the verdict hinges on, with its unit and what it is held against; "" when none."""
    return KINDS[verdict.kind].deciding_number(verdict, decisive_record(verdict, records))
