"""Open a built report in headless Chromium: every page must load without a console error,
every internal link and image must resolve, and a screenshot of each page is saved.

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
    pages = sorted(report.glob("*.html"))
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
            page.screenshot(path=str(screenshots / f"{html.stem}.png"), full_page=True)
            page.close()
        browser.close()
    if expect_text is not None and not shown:
        problems.append(f"no page shows the text {expect_text!r}")
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
