"""Functions the isolation tests run in child processes (imported there by name)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


class OutOfMemoryError(RuntimeError):
    """Named like torch's, which is how the parent recognises an out-of-memory."""


def returns(x: int) -> dict:
    return {"double": 2 * x, "pid": os.getpid()}


def raises() -> dict:
    raise ValueError("the engine refused the config")


def runs_out_of_memory() -> dict:
    raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def hangs_with_a_grandchild(pid_file: str) -> dict:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(pid_file, "w") as handle:
        handle.write(f"{os.getpid()} {child.pid}")
    time.sleep(60)
    return {}


def segfaults() -> dict:
    os.kill(os.getpid(), signal.SIGSEGV)
    return {}


def returns_a_list() -> list:
    return [1, 2]
