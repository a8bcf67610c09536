"""Run one measurement in a child process with a timeout.

A model load can segfault, run out of device memory, or hang; none of that may take
the harness (or a sweep) down with it. The child imports its target by name
("module:function", nothing pickled but plain data), runs it, and sends back either
its result dict or the formatted traceback. The parent turns every ending into an
:class:`Outcome`: ok, oom, error or timeout, with the error text.

A fresh process per measurement also gives clean peak-memory numbers.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any

import psutil

ERROR_TAIL_CHARS = 4000
KILL_GRACE_S = 3.0


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok" | "oom" | "error" | "timeout"
    value: dict[str, Any] | None
    error: str | None
    duration_s: float


def _is_oom(exc_name: str, text: str) -> bool:
    return exc_name == "OutOfMemoryError" or "out of memory" in text.lower()


def _child(target: str, kwargs: dict[str, Any], conn: Any) -> None:
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # torch and NVML number devices alike
    try:
        module, name = target.split(":")
        value = getattr(importlib.import_module(module), name)(**kwargs)
        if not isinstance(value, dict):
            raise TypeError(f"{target} returned {type(value).__name__}, not a dict")
        conn.send(("ok", value, None))
    except BaseException as exc:  # everything, including KeyboardInterrupt in the child, is reported
        conn.send(("error", traceback.format_exc()[-ERROR_TAIL_CHARS:], type(exc).__name__))
    finally:
        conn.close()


def kill_tree(pid: int) -> None:
    """Terminate a process and all its descendants (engines start their own workers)."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=KILL_GRACE_S)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=KILL_GRACE_S)


def run_isolated(target: str, kwargs: dict[str, Any], timeout_s: float) -> Outcome:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, kwargs, sender), daemon=False)
    start = time.perf_counter()
    process.start()
    sender.close()  # the parent keeps only its end, so a dead child reads as EOF
    try:
        message = None
        if receiver.poll(timeout_s):
            try:
                message = receiver.recv()
            except EOFError:  # the child died before sending
                message = None
        elif process.is_alive():
            kill_tree(process.pid)
            return Outcome("timeout", None, f"timed out after {timeout_s:g} s", time.perf_counter() - start)
        process.join(KILL_GRACE_S)
        if process.is_alive():  # sent its result but hangs on exit (engine threads): stop it
            kill_tree(process.pid)
        elapsed = time.perf_counter() - start
        if message is None:
            return Outcome("error", None, _death_text(process.exitcode), elapsed)
        status, value, exc_name = message
        if status == "ok":
            return Outcome("ok", value, None, elapsed)
        return Outcome("oom" if _is_oom(exc_name, value) else "error", None, value, elapsed)
    finally:
        if process.is_alive():
            kill_tree(process.pid)
        process.join(KILL_GRACE_S)
        receiver.close()


def _death_text(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if name == "SIGKILL":
            return "killed by SIGKILL (the kernel's out-of-memory killer, or an external kill)"
        return f"killed by signal {name}"
    return f"the measurement process exited with code {exitcode} without a result"
