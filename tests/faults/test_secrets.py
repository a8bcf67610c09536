"""Secrets and scratch: with a different token planted under every name the hub libraries read a token from
(HF_TOKEN, HUGGING_FACE_HUB_TOKEN, the HF_TOKEN_PATH file, the token file in HF_HOME), a run, a fine-tune, a
sweep, a report and the readers write no token into any file, and leave no scratch folder behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.helpers.faults import TINY_RUN, one_line, valid_records
from tests.helpers.paths import ROOT

TOKENS = {name: f"hf_planted{name.replace('_', '')}Q7xZ2" for name in
          ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HOME")}


def test_no_planted_token_reaches_any_file_bench_writes(tmp_path, fault):
    home, scratch, results, site = tmp_path / "hf-home", tmp_path / "tmp", tmp_path / "results", tmp_path / "site"
    for folder in (home, scratch):
        folder.mkdir()
    (tmp_path / "token-file").write_text(TOKENS["HF_TOKEN_PATH"])
    (home / "token").write_text(TOKENS["HF_HOME"])
    env = {**os.environ, "HF_TOKEN": TOKENS["HF_TOKEN"], "HUGGING_FACE_HUB_TOKEN": TOKENS["HUGGING_FACE_HUB_TOKEN"],
           "HF_TOKEN_PATH": str(tmp_path / "token-file"), "HF_HOME": str(home), "TMPDIR": str(scratch),
           "HF_HUB_OFFLINE": "1", "BENCH_RESULTS_DIR": str(results), "XDG_STATE_HOME": str(tmp_path / "state")}
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""\
        id: secrets
        device: cpu
        matrix:
          - kind: inference
            models: [tiny-llama]
            backends: [transformers]
            options: {batch: 1, prompt_len: 5, output_len: 2, iterations: 1, min_duration: 0, timeout: 120}
        """))
    commands = [list(TINY_RUN),
                ["finetune", "tiny-llama", "--recipe", "lora-sft", "--steps", "2", "--device", "cpu"],
                ["sweep", str(tmp_path / "sweep.yaml")], ["report", "--out", str(site)], ["results", "--json"],
                ["verdicts", "--json"]]
    for args in commands:
        proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        for name, token in TOKENS.items():
            assert token not in proc.stdout + proc.stderr, (args, name)
    records = valid_records(results)
    fault.lost_records = 3 - len(records)
    assert {r.kind for r in records} == {"inference", "finetune"} and fault.lost_records == 0
    planted = {tmp_path / "token-file", home / "token"}
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in planted]
    assert any(p.suffix == ".log" for p in written) and any(p.parent == site for p in written)
    for path in written:
        data = path.read_bytes()
        for name, token in TOKENS.items():
            assert token.encode() not in data, f"{name}'s token in {path}"
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("bench-")]  # fine-tune scratch removed


def test_a_record_that_would_hold_the_token_is_refused_in_one_line(tmp_path, fault):
    """A token that a finished run's record would contain (here the model's own name): nothing is written,
    the run fails in one line naming where the token came from, never the token."""
    env = {**os.environ, "HF_TOKEN": "tiny-llama", "BENCH_RESULTS_DIR": str(tmp_path / "results"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", *TINY_RUN], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert one_line(proc.stderr).startswith("error: refusing to write a record")
    assert "HF_TOKEN" in proc.stderr and "no record was written" in proc.stderr
    assert valid_records(tmp_path / "results") == []
