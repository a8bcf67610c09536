"""Measurements the fault tests run in bench's child process (imported there by name, like a real scenario).

Each takes the `settings` dict that `bench.jobs.runner.execute` passes to every scenario.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _grandchild(pid_file: str) -> None:
    """Start a grandchild, as vLLM starts its engine core, and write both pids for the test."""
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(pid_file).write_text(f"{os.getpid()} {grandchild.pid}")


def hangs_with_a_grandchild(settings: dict) -> dict:
    _grandchild(settings["pid_file"])
    time.sleep(120)
    return {}


def kills_itself_leaving_a_grandchild(settings: dict) -> dict:
    _grandchild(settings["pid_file"])
    os.kill(os.getpid(), 9)
    return {}


def allocates_past_its_memory_limit(settings: dict) -> dict:
    """Cap this process's address space just above what it holds, then ask torch for 1 GiB more."""
    import psutil
    import torch

    held = psutil.Process().memory_info().vms
    resource.setrlimit(resource.RLIMIT_AS, (held + 256 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    torch.ones(2**30, dtype=torch.uint8)
    return {}


def fills_the_results_folder(settings: dict) -> dict:
    """Use up the free space of the results folder during the run, as another job on the disk might."""
    with open(Path(settings["results_dir"]) / "filler", "wb") as handle, contextlib.suppress(OSError):
        while True:  # until the disk is full
            handle.write(b"\0" * 2**20)
            handle.flush()
    return {"metrics": {"decode_tokens_per_s": {"value": 1.0, "unit": "tokens/s"}}}


def returns_a_metric(settings: dict) -> dict:
    return {"metrics": {"decode_tokens_per_s": {"value": 42.0, "unit": "tokens/s"}}}
