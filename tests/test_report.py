"""`bench report`, `bench cite` and `bench compare` on constructed GPU records and a real CPU run,
and the HTML checked in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT
from tests.helpers.report_records import gpu_inference, write_all

SCRIPT_QUOTE = "<script>alert('owned')</script> fits any card"


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """The project's configs with one quote that carries markup, as a hostile page might."""
    target = tmp_path_factory.mktemp("cfg") / "configs"
    shutil.copytree(ROOT / "configs", target)
    path = target / "claims" / "maverick-toolkit-vs-mistral-small-24b.yaml"
    text = path.read_text()
    old = next(line for line in text.splitlines() if line.strip().startswith("quote:"))
    path.write_text(text.replace(old, old.split("quote:")[0] + f'quote: "{SCRIPT_QUOTE}"', 1))
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory, configs):
    import os

    results = write_all(tmp_path_factory.mktemp("records"), [
        gpu_inference("night-1", decode=60.0, peak_gib=17.0, started="2026-11-21T03:00:00+00:00", spread=0.02),
        gpu_inference("night-2", decode=48.0, peak_gib=17.1, started="2026-11-22T03:00:00+00:00", spread=0.02),
    ])
    env = {**os.environ, "BENCH_CONFIG_DIR": str(configs)}
    subprocess.run([sys.executable, "-m", "bench.cli", "run", "tiny-llama", "--device", "cpu", "--backend",
                    "transformers", "--iterations", "2", "--min-duration", "0.1", "--batch", "2", "--output-len",
                    "4", "--prompt-len", "8", "--results-dir", str(results)], check=True, cwd=ROOT, env=env,
                   capture_output=True, timeout=300)
    out = results.parent / "site"
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "report", "--out", str(out), "--results-dir",
                           str(results)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return results, out, env


def test_report_files_and_links(built):
    _, out, _ = built
    assert (out / "index.html").exists() and (out / "index.md").exists()
    assert len(list(out.glob("*.html"))) == 6  # index + five pages
    assert {p.name for p in out.glob("*.md")} >= {"index.md", "measurements.md"}
    assert (out / "claims" / "scout-toolkit-qlora-24gb.html").exists()
    assert (out / "verdicts.csv").read_text().count("\n") > 10 and "night-2" in (out / "measurements.csv").read_text()
    index = (out / "index.html").read_text()
    assert "scout-toolkit-qlora-24gb" in index and "refuted-by-arithmetic" in index
    assert (out / "records" / "night-2.json").exists()


def test_index_counts_and_contradictions_first(built):
    _, out, _ = built
    md = (out / "index.md").read_text()
    claims_table = md.split("## All claims")[1]
    first_row = next(line for line in claims_table.splitlines() if line.startswith("| [`"))
    assert "**fails**" in first_row or "**refuted-by-arithmetic**" in first_row
    totals = next(line for line in md.splitlines() if line.startswith("| all pages"))
    assert sum(int(c) for c in totals.split("|")[3:-1]) == 2 * int(totals.split("|")[-2])  # words sum to total


def test_measured_record_decides_and_is_linked(built):
    _, out, _ = built
    page = (out / "maverick-toolkit-vs-mistral-small-24b.html").read_text()
    assert 'href="records/night-2.json"' in page
    assert "measured under a cap emulating the claimed card" in page
    assert (out / "plots" / "maverick-toolkit-vs-mistral-small-24b-speed.png").exists()
    assert "NVIDIA H100 80GB HBM3" in page and "580.65" in page  # provenance


def test_regression_is_flagged(built):
    _, out, _ = built
    index = (out / "index.html").read_text()
    assert "1 regression(s)" in index and "-20.0%" in index


def test_quotes_are_text_not_markup(built):
    _, out, _ = built
    html = (out / "maverick-toolkit-vs-mistral-small-24b.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html
    md = (out / "maverick-toolkit-vs-mistral-small-24b.md").read_text()
    assert "<script>" not in md and "\\<script\\>" in md
    rendered = _render_markdown(md)
    assert "<script>" not in rendered and "&lt;script&gt;alert('owned')&lt;/script&gt;" in rendered


def _render_markdown(text: str) -> str:
    """The HTML a CommonMark renderer with GitHub's tables makes of a Markdown file."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(text)


def test_markdown_uses_markdown_escapes_not_html_entities(built):
    """Escaped once, the Markdown way: the files read `<=` and `>` as backslash escapes, never `&lt;`, and
    render to text that an HTML page shows as `<=` (one entity in the HTML, never `&amp;lt;`)."""
    _, out, _ = built
    pages = [*out.glob("*.md"), *(out / "claims").glob("*.md")]
    assert len(pages) > 10
    assert [p.name for p in pages if re.search(r"&(lt|gt|amp|quot|#\d+);", p.read_text())] == []
    index = (out / "index.md").read_text()
    assert "\\<= budget" in index and "\\> budget" in index
    rendered = _render_markdown(index)
    assert " &lt;= budget " in rendered and " GiB &gt; budget " in rendered
    assert "&amp;lt;" not in rendered and "&amp;gt;" not in rendered


def test_pages_open_in_chromium_without_errors(built):
    pytest.importorskip("playwright")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is missing: scripts/setup-cpu.sh installs it")
    _, out, env = built
    proc = subprocess.run([sys.executable, "scripts/check_report_browser.py", str(out), "--expect-text",
                           SCRIPT_QUOTE], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((out / "screenshots").glob("*.png"))) == 8  # index, five pages, two claim pages
    opened_claims = [out / "claims" / f"{p.stem}.html" for p in (out / "screenshots").glob("*.png")
                     if (out / "claims" / f"{p.stem}.html").exists()]
    assert any("the quote as a whole" in page.read_text() for page in opened_claims)


def test_cite_a_record_and_a_claim(built, run_bench):
    results, _, env = built
    record = run_bench("cite", "night-2", "--results-dir", str(results), env=env)
    assert record.returncode == 0
    for text in ("48.0 tokens/s", "NVIDIA H100 80GB HBM3, capped to rtx-4090's memory", "vllm 0.32.0",
                 "record: night-2", "2026-11-22", "measured under a cap emulating rtx-4090", "reproduce: bench run"):
        assert text in record.stdout
    claim = run_bench("cite", "scout-toolkit-qlora-24gb", "--results-dir", str(results), env=env)
    assert "verdict: refuted-by-arithmetic" in claim.stdout and "evidence: arithmetic lower bound" in claim.stdout
    assert "reproduce: bench plan llama-4-scout --finetune qlora-sft --gpu rtx-4090" in claim.stdout
    markdown = run_bench("cite", "scout-toolkit-qlora-24gb", "--format", "markdown", "--results-dir", str(results),
                         env=env)
    assert "- evidence: arithmetic lower bound" in markdown.stdout and "bench 0.1.0, commit" in markdown.stdout
    bib = run_bench("cite", "night-2", "--format", "bibtex", "--results-dir", str(results), env=env).stdout
    assert bib.startswith("@misc{night-2,") and "records = {night-2}" in bib
    as_json = json.loads(run_bench("cite", "scout-toolkit-qlora-24gb", "--format", "json", "--results-dir",
                                   str(results), env=env).stdout)
    assert as_json["evidence_class"] == "arithmetic lower bound" and as_json["page"]["address"] is None
    wrong = run_bench("cite", "scout-toolkit-qlora-24g", env=env)
    assert wrong.returncode == 2 and "did you mean: scout-toolkit-qlora-24gb" in wrong.stderr


def test_compare_exits_1_on_regression(tmp_path, run_bench):
    before = write_all(tmp_path / "a", [gpu_inference("a1", 60.0, 17.0, "2026-11-21T03:00:00+00:00", spread=0.02)])
    slower = write_all(tmp_path / "b", [gpu_inference("b1", 50.0, 17.0, "2026-11-22T03:00:00+00:00", spread=0.02)])
    steady = write_all(tmp_path / "c", [gpu_inference("c1", 58.0, 17.5, "2026-11-22T03:00:00+00:00", spread=0.02)])
    proc = run_bench("compare", str(before), str(slower))
    assert proc.returncode == 1 and "regression" in proc.stdout and "-16.7%" in proc.stdout
    assert run_bench("compare", str(before), str(steady)).returncode == 0  # -3.3% speed, +2.9% memory


def test_a_claim_page_lists_the_newest_runs_and_counts_the_rest(tmp_path, run_bench):
    from bench.report.claim_pages import OTHERS_SHOWN
    from tests.helpers.report_records import gpu_inference, write_all

    runs = [gpu_inference(f"20261101T0{i:05d}Z-inference-mistral-3b-{i:06x}", 50.0, 3.0,
                          f"2026-11-01T{i // 60:02d}:{i % 60:02d}:00+00:00", model="mistral-3b", target="a100-80gb")
            for i in range(OTHERS_SHOWN + 5)]
    write_all(tmp_path / "results", runs)
    proc = run_bench("report", "--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "out" / "claims" / "mistral-3b-fits-4gb-kv.html").read_text()
    listed = [r.id for r in runs if r.id in page]
    assert listed == [r.id for r in runs[-OTHERS_SHOWN:]]  # the newest
    assert "5 older runs are in the" in page
