"""Faults in processes: kill -9 of the measurement's child and of bench itself, SIGINT and SIGTERM during a
run, a timeout, and an out-of-memory under a memory limit. No process may outlive the run, and every
run that ended leaves its record."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess

import psutil
import pytest

from tests.helpers.faults import PYTHON, TINY_RUN, alive, bench_process, descendants, one_line, valid_records, wait_for
from tests.helpers.paths import ROOT


def driver(target: str, results, timeout_s: float = 60, **settings) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "tests.faults.driver", target, str(results), str(timeout_s),
                             *(f"{k}={v}" for k, v in settings.items())], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def pids_from(pid_file) -> list[int]:
    return [int(p) for p in wait_for(lambda: pid_file.exists() and pid_file.read_text().split(),
                                     what="the child's pids")]


def test_kill_9_of_the_child_is_an_error_record_and_takes_its_grandchild(tmp_path, fault):
    proc = driver("kills_itself_leaving_a_grandchild", tmp_path / "results", pid_file=tmp_path / "pids")
    out, err = proc.communicate(timeout=60)
    fault.leftover_processes = len(alive(pids_from(tmp_path / "pids")))
    (record,) = valid_records(tmp_path / "results")
    fault.lost_records = 0 if record.status == "error" else 1
    assert proc.returncode == 0, err
    assert "SIGKILL" in record.error and fault.leftover_processes == 0


def test_kill_9_of_bench_takes_the_child_and_its_grandchild_with_it(tmp_path, fault):
    proc = driver("hangs_with_a_grandchild", tmp_path / "results", pid_file=tmp_path / "pids")
    pids = pids_from(tmp_path / "pids")
    proc.kill()
    proc.wait(timeout=10)
    fault.leftover_processes = len(alive(pids))
    assert fault.leftover_processes == 0
    assert not list((tmp_path / "results").glob("*.json"))  # killed before the end: no record, no half of one


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_during_bench_run_stops_it_in_one_line_leaving_nothing_running(tmp_path, fault, sig):
    results = tmp_path / "results"
    proc = bench_process(*TINY_RUN, "--results-dir", str(results))
    wait_for(lambda: list(results.glob("*.log")), what="the run's child to start")
    children = wait_for(lambda: descendants(proc.pid), what="the child process")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    fault.leftover_processes = len(alive(children))
    assert proc.returncode == 130 and "interrupted" in one_line(err)
    assert fault.leftover_processes == 0
    assert not [p for p in results.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_a_timeout_is_a_timeout_record_and_kills_the_tree(tmp_path, fault):
    proc = driver("hangs_with_a_grandchild", tmp_path / "results", timeout_s=2, pid_file=tmp_path / "pids")
    out, err = proc.communicate(timeout=60)
    fault.leftover_processes = len(alive(pids_from(tmp_path / "pids")))
    records = valid_records(tmp_path / "results")
    fault.lost_records = 1 - len(records)
    assert proc.returncode == 0, err
    assert [r.status for r in records] == ["timeout"] and fault.leftover_processes == 0


def test_out_of_memory_under_a_memory_limit_is_recorded_oom(tmp_path, fault):
    proc = driver("allocates_past_its_memory_limit", tmp_path / "results")
    out, err = proc.communicate(timeout=120)
    records = valid_records(tmp_path / "results")
    fault.lost_records = 1 - len(records)
    assert proc.returncode == 0, err
    assert [r.status for r in records] == ["oom"], records[0].error if records else err


def test_a_record_survives_when_the_parent_is_killed_after_writing(tmp_path, fault):
    """Killing bench right after a run leaves the written record whole (kill on the way out)."""
    proc = driver("returns_a_metric", tmp_path / "results")
    proc.communicate(timeout=60)
    os.sync()
    records = valid_records(tmp_path / "results")
    fault.lost_records = 1 - len(records)
    assert records[0].metrics["decode_tokens_per_s"].value == 42.0


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")
def test_kill_9_of_bench_takes_vllm_s_engine_core_with_it(tmp_path, fault):
    """The case that matters: vLLM's EngineCore, started by bench's child, must not outlive `bench run`."""
    proc = bench_process("run", "tiny-llama", "--device", "cpu", "--backend", "vllm", "--batch", "1", "--prompt-len",
                         "4", "--output-len", "2", "--iterations", "1", "--min-duration", "0", "--results-dir",
                         str(tmp_path / "results"))

    def engine_core_started():
        tree = [p for p in psutil.Process(proc.pid).children(recursive=True)]
        return tree if any("EngineCore" in p.name() for p in tree) else None

    tree = wait_for(engine_core_started, timeout_s=120, what="vLLM's EngineCore")
    proc.kill()
    proc.wait(timeout=10)
    fault.leftover_processes = len(alive([p.pid for p in tree]))
    assert fault.leftover_processes == 0
