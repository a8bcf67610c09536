"""Isolation: every way a measurement can end becomes an Outcome, and the parent goes on.

Each test starts real child processes; the targets are in tests/helpers/isolate_targets.py.
"""

from __future__ import annotations

import os
import tempfile
import time

import psutil
import pytest

from bench.launch import isolate
from bench.launch.isolate import run_isolated

T = "tests.helpers.isolate_targets"


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


def test_torch_running_out_of_cpu_memory_is_an_oom():
    out = run_isolated(f"{T}:allocates_beyond_memory", {}, timeout_s=60)
    assert out.status == "oom" and "DefaultCPUAllocator: can't allocate memory" in out.error


@pytest.mark.parametrize(("code", "status", "cause"), [
    ("import torch; torch.empty(2**62, dtype=torch.uint8)", "oom",
     "RuntimeError: [enforce fail at alloc_cpu.cpp"),
    ("raise ValueError('the checkpoint has no weights')", "error", "ValueError: the checkpoint has no weights"),
])
def test_a_grandchild_s_root_cause_reaches_the_outcome_through_the_log(tmp_path, code, status, cause):
    log = tmp_path / "run.log"
    out = run_isolated(f"{T}:fails_like_an_engine_core", {"code": code}, timeout_s=60, log_path=log)
    assert out.status == status and out.log_path == str(log)
    assert out.error.startswith(cause) and "Engine core initialization failed" in out.error
    assert len(out.error) <= isolate.ERROR_TAIL_CHARS
    text = log.read_text()
    assert "the child's own output" in text and "Traceback" in text and cause in text


def test_without_a_log_path_the_log_is_temporary_and_the_cause_still_arrives(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # this test's own temporary directory
    code = "import torch; torch.empty(2**62, dtype=torch.uint8)"
    out = run_isolated(f"{T}:fails_like_an_engine_core", {"code": code}, timeout_s=60)
    assert out.status == "oom" and out.log_path is None and "DefaultCPUAllocator" in out.error
    assert list(tmp_path.iterdir()) == []
