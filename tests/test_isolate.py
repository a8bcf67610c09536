"""Isolation: every way a measurement can end becomes an Outcome, and the parent goes on."""

from __future__ import annotations

import os
import time

import psutil

from bench.isolate import run_isolated

T = "tests.isolate_targets"


def test_ok_returns_the_value():
    out = run_isolated(f"{T}:returns", {"x": 21}, timeout_s=60)
    assert out.status == "ok" and out.value["double"] == 42 and out.error is None
    assert out.value["pid"] != os.getpid()


def test_exception_is_an_error_with_its_traceback():
    out = run_isolated(f"{T}:raises", {}, timeout_s=60)
    assert out.status == "error" and "ValueError: the engine refused the config" in out.error


def test_out_of_memory_is_recognised():
    out = run_isolated(f"{T}:runs_out_of_memory", {}, timeout_s=60)
    assert out.status == "oom" and "out of memory" in out.error


def test_timeout_kills_the_whole_tree(tmp_path):
    pid_file = tmp_path / "pids"
    start = time.perf_counter()
    out = run_isolated(f"{T}:hangs_with_a_grandchild", {"pid_file": str(pid_file)}, timeout_s=3)
    assert out.status == "timeout" and "timed out after 3 s" in out.error
    assert time.perf_counter() - start < 30
    child, grandchild = map(int, pid_file.read_text().split())
    time.sleep(0.2)
    for pid in (child, grandchild):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_crash_is_an_error_naming_the_signal():
    out = run_isolated(f"{T}:segfaults", {}, timeout_s=60)
    assert out.status == "error" and "SIGSEGV" in out.error


def test_a_non_dict_result_is_an_error():
    out = run_isolated(f"{T}:returns_a_list", {}, timeout_s=60)
    assert out.status == "error" and "not a dict" in out.error
