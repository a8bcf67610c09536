"""The fault-injection suite's tally: each test injects one fault, counts what it lost and what it left
running, and the session ends with the table (tried, handled, lost records, leftover processes).

A fault is handled when its test passed; lost records and leftover processes are counted by the test
itself (records checked by reading them back, processes by pid) and must be 0 for it to pass.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

PYTHON = sys.executable


@dataclass
class Fault:
    nodeid: str
    name: str
    lost_records: int = 0
    leftover_processes: int = 0


FAULTS: list[Fault] = []


@pytest.fixture
def fault(request) -> Fault:
    """This test's row of the table: set `lost_records` and `leftover_processes` as counted."""
    row = Fault(request.node.nodeid, request.node.name.removeprefix("test_"))
    FAULTS.append(row)
    return row


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FAULTS:
        return
    passed = {r.nodeid for r in terminalreporter.stats.get("passed", []) if r.when == "call"}
    width = max(len(f.name) for f in FAULTS)
    write = terminalreporter.write_line
    terminalreporter.section("fault injection")
    write(f"{'fault':{width}s}  handled  lost records  leftover processes")
    for f in FAULTS:
        write(f"{f.name:{width}s}  {'yes' if f.nodeid in passed else 'NO':7s}  {f.lost_records:12d}  "
              f"{f.leftover_processes:18d}")
    handled = sum(f.nodeid in passed for f in FAULTS)
    write(f"{'total':{width}s}  tried {len(FAULTS)}, handled {handled}, lost records "
          f"{sum(f.lost_records for f in FAULTS)}, leftover processes {sum(f.leftover_processes for f in FAULTS)}")


def alive(pids, within_s: float = 5.0) -> list[int]:
    """Those of `pids` still running (zombies count as gone) after waiting up to `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        left = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
        if not left or time.monotonic() >= deadline:
            for pid in left:  # do not leave them to the next test
                psutil.Process(pid).kill()
            return left
        time.sleep(0.05)


def wait_for(predicate, timeout_s: float = 60.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def bench_process(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`bench ARGS` started in the background, as a user would start it."""
    return subprocess.Popen([PYTHON, "-m", "bench.cli", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


TINY_RUN = ("run", "tiny-llama", "--device", "cpu", "--backend", "transformers", "--batch", "1", "--prompt-len",
            "4", "--output-len", "2", "--iterations", "1", "--min-duration", "0")


def can_mount_tmpfs() -> bool:
    """Whether this machine lets an unprivileged user namespace mount a tmpfs (real full and read-only folders)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d && umount $d && rmdir $d"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def valid_records(directory: Path) -> list:
    from bench.results import iter_records

    return list(iter_records(directory))
