"""Bad records in the results folder: corrupt, truncated, future-schema, foreign, and hostile ids and quotes.
Each is skipped with one warning (once per command), the good records are all used, and nothing is read
or written outside the folders given."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers.faults import valid_records
from tests.helpers.paths import ROOT
from tests.helpers.report_records import gpu_inference, write_all

HOSTILE_QUOTE = "fits [a 4090](javascript:alert(1)) <img src=x onerror=alert(2)> ![p](javascript:alert(3))"


def bench(*args, env=None):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two good records and one file of each bad kind; a secret beside the folder that a hostile id points to."""
    root = tmp_path_factory.mktemp("bad")
    results = write_all(root / "results", [
        gpu_inference("night-1", decode=60.0, peak_gib=17.0, started="2026-11-21T03:00:00+00:00"),
        gpu_inference("night-2", decode=58.0, peak_gib=17.0, started="2026-11-22T03:00:00+00:00")])
    good = json.loads((results / "night-1.json").read_text())
    (root / "src").mkdir()
    (root / "src" / "pwn.json").write_text(json.dumps({**good, "id": "../src/pwn"}))  # outside the results
    bad = {
        "corrupt": b"{\x00\xff not json",
        "truncated": (results / "night-1.json").read_bytes()[:200],
        "future": json.dumps({**good, "id": "future", "schema_version": 999}).encode(),
        "foreign": json.dumps({"name": "someone else's file", "version": 3}).encode(),
        "hostile-id": json.dumps({**good, "id": "../src/pwn"}).encode(),
        "renamed": json.dumps({**good, "id": "night-9"}).encode(),
        "list": b"[1, 2, 3]",
    }
    for name, data in bad.items():
        (results / f"{name}.json").write_bytes(data)
    return root, results, bad


def warnings_for(stderr: str, names) -> dict[str, int]:
    return {name: sum(f"{name}.json" in line and line.startswith("warning: skipping") for line in stderr.splitlines())
            for name in names}


@pytest.mark.parametrize("command", ["results", "verdicts", "report", "compare"])
def test_bad_records_are_skipped_once_each_and_good_ones_kept(folder, tmp_path, fault, command):
    root, results, bad = folder
    args = {"results": ["results", "--json", "--results-dir", str(results)],
            "verdicts": ["verdicts", "--json", "--results-dir", str(results)],
            "report": ["report", "--out", str(tmp_path / "site"), "--results-dir", str(results)],
            "compare": ["compare", str(results), str(results)]}[command]
    proc = bench(*args)
    assert proc.returncode == 0, proc.stderr
    counts = warnings_for(proc.stderr, bad)
    per_folder = 2 if command == "compare" else 1  # compare reads its two folders (here the same one)
    assert counts == {name: per_folder for name in bad}, proc.stderr
    fault.lost_records = 2 - len(valid_records(results))
    if command == "results":
        fault.lost_records = 2 - len({row["id"] for row in json.loads(proc.stdout)} & {"night-1", "night-2"})
    assert fault.lost_records == 0


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory):
    """Two good records beside records of a wrong type inside a free-form field, special files and links:
    each of the first crashed every reader, each of the rest hung it or filled its memory."""
    root = tmp_path_factory.mktemp("hostile")
    results = write_all(root / "results", [
        gpu_inference("night-1", decode=60.0, peak_gib=17.0, started="2026-11-21T03:00:00+00:00"),
        gpu_inference("night-2", decode=58.0, peak_gib=17.0, started="2026-11-22T03:00:00+00:00")])
    good = json.loads((results / "night-1.json").read_text())
    mistyped = {
        "engine-text": {"details": {"engine": "vllm"}},
        "scenario-text": {"config": {"scenario": "vllm"}},
        "batch-text": {"config": {"scenario": {**good["config"]["scenario"], "batch": "8"}}},
        "target-list": {"hardware": {**good["hardware"], "target": ["rtx-4090"]}},
        "decode-object": {"metrics": {**good["metrics"],
                                      "decode_tokens_per_s": {"value": {"x": 1}, "unit": "tokens/s"}}},
        "levels-text": {"details": {"levels": "c1"}},
        "commit-number": {"software": {**good["software"], "bench_commit": 7}},
    }
    for name, change in mistyped.items():
        (results / f"{name}.json").write_text(json.dumps({**good, **change, "id": name}))
    (root / "outside").mkdir()
    (root / "outside" / "night-3.json").write_text(json.dumps({**good, "id": "night-3"}))
    (results / "night-3.json").symlink_to(root / "outside" / "night-3.json")  # valid, but another folder's
    (results / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(results / "fifo.json")
    with open(results / "huge.json", "wb") as handle:  # sparse: over the cap without using the disk
        handle.truncate(2**30)
    return results, [*mistyped, "night-3", "zero", "fifo", "huge"]


@pytest.mark.parametrize("command", ["results", "verdicts", "report", "compare", "cite"])
def test_mistyped_records_and_special_files_are_skipped_once_each(hostile_folder, tmp_path, fault, command):
    results, bad = hostile_folder
    args = {"results": ["results", "--json", "--results-dir", str(results)],
            "verdicts": ["verdicts", "--json", "--results-dir", str(results)],
            "report": ["report", "--out", str(tmp_path / "site"), "--results-dir", str(results)],
            "compare": ["compare", str(results), str(results)],
            "cite": ["cite", "night-1", "--results-dir", str(results)]}[command]
    proc = bench(*args)
    assert proc.returncode == 0, proc.stderr
    per_folder = 2 if command == "compare" else 1
    assert warnings_for(proc.stderr, bad) == {name: per_folder for name in bad}, proc.stderr
    fault.lost_records = 2 - len(valid_records(results))
    assert fault.lost_records == 0


def test_a_hostile_id_never_becomes_a_path(folder, tmp_path, fault):
    root, results, _ = folder
    site = tmp_path / "deep" / "site"
    assert bench("report", "--out", str(site), "--results-dir", str(results)).returncode == 0
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.startswith("deep/site/") for p in written), written
    assert sorted(p.name for p in (site / "records").iterdir()) == ["night-1.json", "night-2.json"]
    fault.lost_records = 0


def test_a_hostile_quote_is_inert_in_html_and_markdown(tmp_path, fault):
    configs = tmp_path / "configs"
    shutil.copytree(ROOT / "configs", configs)
    path = configs / "claims" / "maverick-toolkit-vs-mistral-small-24b.yaml"
    text = path.read_text()
    old = next(line for line in text.splitlines() if line.strip().startswith("quote:"))
    path.write_text(text.replace(old, old.split("quote:")[0] + "quote: " + json.dumps(HOSTILE_QUOTE), 1))
    site = tmp_path / "site"
    (tmp_path / "none").mkdir()  # an empty results folder: the verdicts come from arithmetic
    proc = bench("report", "--out", str(site), "--results-dir", str(tmp_path / "none"),
                 env={"BENCH_CONFIG_DIR": str(configs)})
    assert proc.returncode == 0, proc.stderr
    pages = {p.name: p.read_text() for p in site.iterdir() if p.suffix in (".md", ".html")}
    assert any("alert(1)" in text for text in pages.values())  # the quote is shown
    for name, text in pages.items():
        if name.endswith(".md"):  # Markdown: brackets and angle brackets backslash-escaped, so nothing forms
            assert not re.search(r"(?<!\\)\]\(javascript:", text), name
            assert not re.search(r"(?<!\\)<img src=x", text), name
        else:
            assert "<img src=x" not in text, name
        assert 'href="javascript' not in text.lower(), name
    fault.lost_records = 0
