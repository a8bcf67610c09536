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


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> UserError:
    """``unknown model 'mistal-3b'; did you mean: mistral-3b?`` with the closest ids."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}?" if close else f"known: {', '.join(known)}"
    return UserError(f"unknown {kind} {name!r}; {hint}")
