"""Errors a user can fix, kept apart from bugs.

A :class:`UserError` is bad input (an unknown id, a broken YAML field, an
unsupported architecture). The CLI prints its message as one line and exits 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: shown as one line, exit code 2."""

    exit_code = 2


# Up to this many known names are listed when none is close; more would bury the error line.
LISTED_AT_MOST = 8


def unknown_name_error(kind: str, name: str, known: Iterable[str], listing: str = "", how: str = "") -> UserError:
    """``unknown model 'mistal-3b'; did you mean: mistral-3b?`` with the closest ids; with none close, the
    known ids when they are few, else how to list them (`listing`, a command). `how` says what else the
    name could have been (a Hub id, a folder), so the line answers the next question too."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
    if close:
        hint = f"did you mean: {', '.join(close)}?"
    elif len(known) <= LISTED_AT_MOST or not listing:
        hint = f"known: {', '.join(known[:LISTED_AT_MOST])}" + (f" and {len(known) - LISTED_AT_MOST} more"
                                                                if len(known) > LISTED_AT_MOST else "")
    else:
        hint = f"none of the {len(known)} known is close; list them with {listing}"
    return UserError(f"unknown {kind} {name!r}; {hint}" + (f"; or {how}" if how else ""))
