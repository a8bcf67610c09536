"""What the fault-injection tests share: starting bench as a user would, and counting what a fault left
behind (processes still alive, records that read back)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.helpers.paths import ROOT

PYTHON = sys.executable


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
    from bench.records.store import iter_records

    return list(iter_records(directory))
