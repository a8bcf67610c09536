"""Text and URLs from claims, registry entries and records, made safe for the reports.

Quotes come from review pages and records may come from anyone, so nothing they hold
may become live markup or a live link in a report. HTML templates autoescape text;
what autoescaping does not cover is an attribute that takes a URL (`href`, `src`),
where `javascript:` stays live, and Markdown, where `[x](javascript:...)` is a link.
:func:`safe_url` keeps only URLs whose scheme is harmless (or relative ones), and
:func:`markdown_text` turns quoted text into inert Markdown.
"""

from __future__ import annotations

import re
from typing import Any

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
# Browsers drop ASCII control characters and whitespace inside a scheme ("java\tscript:"), so they are removed
# before the scheme is read.
_IGNORED_BY_BROWSERS = re.compile(r"[\x00-\x20\x7f]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Characters that make live Markdown (CommonMark, GitHub's tables) out of text: links and images need
# brackets, autolinks and HTML need angle brackets, entities an ampersand; code spans, table cells, and a
# backslash that would undo the escaping. Each is backslash-escaped, which CommonMark allows for any ASCII
# punctuation: the Markdown reads as typed ("<= 24 GiB", not "&lt;= 24 GiB") and renders as itself.
# Emphasis and parentheses are harmless and stay as typed.
_MARKDOWN_SPECIAL = re.compile(r"([\\`\[\]<>|&])")


def safe_url(url: Any) -> str:
    """`url` when it is relative or http(s)/mailto, else "" (so a template's link goes nowhere)."""
    if url is None:
        return ""
    text = str(url).strip()
    squeezed = _IGNORED_BY_BROWSERS.sub("", text)
    if "&" in squeezed and re.search(r"&#|&[a-z]+;", squeezed, re.IGNORECASE):
        return ""  # an entity-encoded scheme ("javascript&#58;") is decoded by the browser after us
    scheme = _SCHEME.match(squeezed)
    if scheme is None:
        # relative, unless its first segment holds a colon that a browser would take as a scheme
        return "" if ":" in squeezed.split("/", 1)[0] else text
    return text if scheme.group(1).lower() in SAFE_SCHEMES else ""


def markdown_text(value: Any) -> str:
    """Quoted text as inert Markdown on one line: every character that would make a link, an image,
    HTML, a code span or a table cell is escaped, so the text renders as itself."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
