"""Isolation: every way a measurement can end becomes an Outcome, and the parent goes on.

Each test starts real child processes; the targets are in tests/isolate_targets.py.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest

from bench import isolate
from bench.isolate import run_isolated

T = "tests.isolate_targets"


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_ok_returns_the_value():
    out = run_isolated(f"{T}:returns", {"x": 21}, timeout_s=30)
    assert out.status == "ok" and out.value["double"] == 42 and out.error is None
    assert out.value["pid"] != os.getpid() and out.duration_s > 0


def test_exception_is_an_error_with_its_traceback():
    out = run_isolated(f"{T}:raises", {}, timeout_s=30)
    assert out.status == "error" and out.value is None
    assert "Traceback" in out.error and "ValueError: the engine refused the config" in out.error


@pytest.mark.parametrize("target", ["runs_out_of_memory", "says_out_of_memory", "fails_because_of_an_oom"])
def test_out_of_memory_is_recognised_by_name_message_or_cause(target):
    out = run_isolated(f"{T}:{target}", {}, timeout_s=30)
    assert out.status == "oom" and "Error" in out.error


@pytest.mark.parametrize("ignore_sigterm", [False, True])
def test_timeout_kills_the_whole_tree(tmp_path, monkeypatch, ignore_sigterm):
    monkeypatch.setattr(isolate, "KILL_GRACE_S", 0.5)  # then SIGKILL for a grandchild that ignores SIGTERM
    pid_file = tmp_path / "pids"
    start = time.perf_counter()
    out = run_isolated(f"{T}:hangs_with_a_grandchild", {"pid_file": str(pid_file), "ignore_sigterm": ignore_sigterm},
                       timeout_s=2)
    assert out.status == "timeout" and out.error == "timed out after 2 s"
    assert time.perf_counter() - start < 10
    child, grandchild = map(int, pid_file.read_text().split())
    assert gone(child) and gone(grandchild)


def test_a_crash_is_an_error_naming_the_signal_and_leaves_no_orphan(tmp_path):
    pid_file = tmp_path / "pids"
    out = run_isolated(f"{T}:segfaults_leaving_a_grandchild", {"pid_file": str(pid_file)}, timeout_s=30)
    assert out.status == "error" and out.error == "killed by signal SIGSEGV"
    _, grandchild = map(int, pid_file.read_text().split())
    assert gone(grandchild)


def test_sigkill_is_an_error_that_names_the_likely_cause():
    out = run_isolated(f"{T}:is_killed", {}, timeout_s=30)
    assert out.status == "error" and "SIGKILL" in out.error and "out-of-memory killer" in out.error


@pytest.mark.parametrize(("target", "says"), [
    ("returns_a_list", "returned list, not a dict"),
    ("dies_halfway_through_sending", "exited with code 3 without a result"),
    ("returns_what_the_parent_cannot_read", "could not read the measurement's result"),
])
def test_a_broken_result_is_an_error_not_a_hang(target, says):
    out = run_isolated(f"{T}:{target}", {}, timeout_s=30)
    assert out.status == "error" and says in out.error and out.duration_s < 10


def test_the_parent_goes_on_after_every_failure():
    for target in ("raises", "segfaults", "is_killed"):
        run_isolated(f"{T}:{target}", {}, timeout_s=30)
    assert run_isolated(f"{T}:returns", {"x": 1}, timeout_s=30).value["double"] == 2
