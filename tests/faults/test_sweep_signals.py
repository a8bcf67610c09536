"""SIGINT and SIGTERM during a sweep: the cell in progress stops with its processes, finished cells keep their
records, and the sweep run again skips them and runs only what is left."""

from __future__ import annotations

import signal

import pytest

from tests.helpers.faults import alive, bench_process, descendants, valid_records, wait_for

SWEEP = """id: two-cells
device: cpu
matrix:
  - kind: inference
    models: [tiny-llama]
    backends: [transformers]
    options: {batch: 1, prompt_len: 4, output_len: 2, iterations: 1, min_duration: 0, timeout: 120}
  - kind: inference
    models: [tiny-llama]
    backends: [transformers]
    options: {batch: 1, prompt_len: 6, output_len: 2, iterations: 1, min_duration: 0, timeout: 120}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_sweep_resumes_and_skips_done_cells(tmp_path, fault, sig):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    results = tmp_path / "results"
    proc = bench_process("sweep", str(tmp_path / "sweep.yaml"), "--results-dir", str(results))
    wait_for(lambda: list(results.glob("*.json")), what="the first cell's record")
    wait_for(lambda: len(list(results.glob("*.log"))) == 2, what="the second cell to start")
    children = descendants(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    fault.leftover_processes = len(alive(children))
    assert proc.returncode == 130 and err.splitlines()[-1].startswith("error: interrupted"), err
    assert "Traceback" not in err
    first = valid_records(results)
    assert len(first) == 1
    again = bench_process("sweep", str(tmp_path / "sweep.yaml"), "--results-dir", str(results))
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "1 ok" in out and "1 skipped" in out, out
    records = valid_records(results)
    fault.lost_records = 2 - len(records)
    assert first[0].id in {r.id for r in records} and fault.leftover_processes == 0
