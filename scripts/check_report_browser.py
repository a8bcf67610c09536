"""Open a built report in headless Chromium: every page must load without a console error,
every internal link and image must resolve, and a screenshot of each page is saved.

The index, each comparison page and two claim pages are opened: the first claim with a record
(else the first claim), and the first claim whose quote makes several claims, whose "quote as a
whole" verdict must be the one computed here. Against the records copied into the report, the
index's verdict counts must equal the verdicts computed from them, and one measured number
(a record's TTFT as its comparison page shows it) must equal the record's own value.

Usage: python scripts/check_report_browser.py REPORT_DIR [--screenshots DIR]
Exit 1 with one line per problem. Needs Debian's `chromium` (/usr/bin/chromium) and the
`playwright` Python package (no browser download: it drives the system Chromium).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM = "/usr/bin/chromium"
# Chromium's background services reach for the network at start; this machine has none.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def check_report(report: Path, screenshots: Path, expect_text: str | None = None) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    screenshots.mkdir(parents=True, exist_ok=True)
    pages = sorted(report.glob("*.html")) + _claim_pages(report)
    shown = False
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for html in pages:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda msg, errors=errors: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            page.on("dialog", lambda dialog, errors=errors: (errors.append(f"dialog opened: {dialog.message}"),
                                                              dialog.dismiss()))
            page.goto(html.resolve().as_uri())
            page.wait_for_load_state("load")
            problems += [f"{html.name}: console: {e}" for e in errors]
            targets = page.eval_on_selector_all("a[href], img[src]", "els => els.map(e => e.href || e.src)")
            for target in targets:
                url = urlparse(target)
                if url.scheme == "file" and not Path(unquote(url.path)).exists():
                    problems.append(f"{html.name}: broken link {target}")
                elif url.scheme not in ("file", ""):
                    problems.append(f"{html.name}: external resource {target} (the report must work offline)")
            broken_images = page.eval_on_selector_all("img", "els => els.filter(e => !e.naturalWidth).length")
            if broken_images:
                problems.append(f"{html.name}: {broken_images} image(s) failed to load")
            if expect_text is not None and expect_text in page.inner_text("body"):
                shown = True
            if html.name == "index.html":
                problems += _check_counts(page, report)
            problems += _check_measured(page, report, html)
            if html.parent.name == "claims":
                problems += _check_compound(page, report, html)
            page.screenshot(path=str(screenshots / f"{html.stem}.png"), full_page=True)
            page.close()
        browser.close()
    if expect_text is not None and not shown:
        problems.append(f"no page shows the text {expect_text!r}")
    return problems


def _records(report: Path) -> list:
    from bench.records.schema import RunRecord

    return [RunRecord.model_validate_json(p.read_text()) for p in sorted((report / "records").glob("*.json"))]


def _claim_pages(report: Path) -> list[Path]:
    claim_pages = sorted((report / "claims").glob("*.html"))
    with_records = [p for p in claim_pages if "records/" in p.read_text()]
    compound = [p for p in claim_pages if "the quote as a whole" in p.read_text()]
    return list(dict.fromkeys((with_records or claim_pages)[:1] + compound[:1]))


def _check_compound(page, report: Path, html: Path) -> list[str]:
    """A compound quote's claim page: the whole quote's verdict shown, against the one computed here."""
    from bench.config.registry import load_registry
    from bench.verdicts.decide import all_verdicts

    shown = page.eval_on_selector_all("tr.quote-whole span.verdict", "els => els.map(e => e.innerText)")
    if not shown:
        return []
    verdict = next(v for v in all_verdicts(load_registry(), _records(report)) if v.claim_id == html.stem)
    return [] if shown[0] == verdict.quote_verdict else [
        f"{html.name}: the quote as a whole shows {shown[0]}, the records give {verdict.quote_verdict}"]


def _check_counts(page, report: Path) -> list[str]:
    """The index's totals per verdict word against the verdicts computed here from the report's records."""
    from collections import Counter

    from bench.config.registry import load_registry
    from bench.verdicts.decide import all_verdicts

    expected = Counter(v.verdict for v in all_verdicts(load_registry(), _records(report)))
    shown = page.eval_on_selector_all("td[data-total]", "els => els.map(e => [e.dataset.total, e.innerText])")
    if not shown:
        return ["index.html: no verdict counts shown"]
    return [f"index.html: {word} shows {text}, the records give {expected.get(word, 0)}"
            for word, text in shown if int(text) != expected.get(word, 0)]


def _check_measured(page, report: Path, html: Path) -> list[str]:
    """Each TTFT cell the page shows, against the TTFT of the record its row links to."""
    from bench.report.terminal import seconds

    cells = page.eval_on_selector_all(
        "table.measured tr", "rows => rows.filter(r => r.querySelector('td[data-metric=ttft_s]')).map(r => "
        "[r.querySelector('a').getAttribute('href'), r.querySelector('td[data-metric=ttft_s]').innerText])")
    by_id = {r.id: r for r in _records(report)}
    problems = []
    for href, text in cells:
        record = by_id.get(Path(href).stem)
        if record is None:
            problems.append(f"{html.name}: row links to {href}, not a record of the report")
        elif text != seconds(record.metrics["ttft_s"].value):
            problems.append(f"{html.name}: TTFT of {record.id} shows {text}, the record holds "
                            f"{record.metrics['ttft_s'].value} s")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--expect-text", default=None, help="Literal text some page must show (as text).")
    args = parser.parse_args()
    problems = check_report(args.report, args.screenshots or args.report / "screenshots", args.expect_text)
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
