"""Run one measurement in a child process with a timeout.

A model load can segfault, run out of device memory, or hang; none of that may take
the harness (or a sweep) down with it. The child imports its target by name
("module:function", nothing pickled but plain data), runs it, and sends back either
its result dict or the formatted traceback. The parent turns every ending into an
:class:`Outcome`: ok, oom, error or timeout, with the error text.

The child leads its own process group, so that engine workers it started are found
and killed even after the child itself has crashed: a leftover worker would hold
device memory and spoil the next measurement of a sweep. A fresh process per
measurement also gives clean peak-memory numbers.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
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


def _is_oom(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, or any error saying "out of memory", here or in its causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if type(current).__name__ == "OutOfMemoryError" or "out of memory" in str(current).lower():
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _child(target: str, kwargs: dict[str, Any], conn: Any) -> None:
    os.setpgrp()  # see the module docstring: the parent kills this group when it is done
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # torch and NVML number devices alike
    try:
        module, name = target.split(":")
        value = getattr(importlib.import_module(module), name)(**kwargs)
        if not isinstance(value, dict):
            raise TypeError(f"{target} returned {type(value).__name__}, not a dict")
        conn.send(("ok", value))
    except BaseException as exc:  # everything, including KeyboardInterrupt in the child, is reported
        conn.send(("oom" if _is_oom(exc) else "error", traceback.format_exc()[-ERROR_TAIL_CHARS:]))
    finally:
        conn.close()


def kill_tree(root: psutil.Process) -> None:
    """Stop a process, its descendants, and whatever is left of its process group.

    SIGTERM first, SIGKILL after a short grace. Descendants are found through the
    process while it lives, and through its group once it has died and they were
    orphaned. `root` was taken when the process started, so psutil refuses to touch
    a pid that was reused since.
    """
    procs: dict[int, psutil.Process] = {root.pid: root}
    with contextlib.suppress(psutil.NoSuchProcess):  # already gone: its group is searched below
        procs.update((p.pid, p) for p in root.children(recursive=True))
    session = os.getsid(0)
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError):  # exited meanwhile, or not ours
            if os.getpgid(proc.pid) == root.pid and os.getsid(proc.pid) == session:
                procs.setdefault(proc.pid, proc)
    alive = list(procs.values())
    for how in ("terminate", "kill"):
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # already ended
                getattr(proc, how)()
        alive = _still_running(alive, KILL_GRACE_S)


def _still_running(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Those of `procs` still running after up to `timeout_s`.

    A zombie counts as gone: its memory is already freed, and reaping is its parent's
    business (multiprocessing's, for the child, which needs the exit code).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        procs = [p for p in procs if _running(p)]
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(0.02)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_isolated(target: str, kwargs: dict[str, Any], timeout_s: float) -> Outcome:
    """Call ``target(**kwargs)`` in a fresh spawned process; every ending is an Outcome."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, kwargs, sender), daemon=False)
    start = time.perf_counter()
    root: psutil.Process | None = None
    try:
        process.start()
        root = psutil.Process(process.pid)
        sender.close()  # the parent keeps only its end, so a dead child reads as EOF
        status, payload = _wait_for_ending(receiver, process, timeout_s)
        if status != "timeout":
            process.join(KILL_GRACE_S)  # a child that sent its result but hangs on exit is stopped below
        elapsed = time.perf_counter() - start
        if status == "ok":
            return Outcome("ok", payload, None, elapsed)
        return Outcome(status, None, payload, elapsed)
    finally:
        sender.close()
        if root is not None:
            kill_tree(root)
            process.join(KILL_GRACE_S)
            if process.exitcode is not None:
                process.close()
        receiver.close()


def _wait_for_ending(receiver: Any, process: Any, timeout_s: float) -> tuple[str, Any]:
    """The child's own (status, value or error text), or how it ended without sending one.

    Waiting on the process's sentinel as well as the pipe means that a crashed child is
    seen at once, even when a grandchild still holds the pipe open.
    """
    deadline = time.perf_counter() + timeout_s
    pipe_open = True
    while (remaining := deadline - time.perf_counter()) > 0:
        ready = wait([receiver, process.sentinel] if pipe_open else [process.sentinel], remaining)
        if pipe_open and (receiver in ready or receiver.poll(0)):
            if (message := _receive(receiver)) is not None:
                return message
            pipe_open = False  # closed without a message: wait for the exit, or the deadline
        elif process.sentinel in ready:
            process.join(KILL_GRACE_S)  # the sentinel fires as the process exits, a moment before it is reaped
            return "error", _death_text(process.exitcode)
    return "timeout", f"timed out after {timeout_s:g} s"


def _receive(receiver: Any) -> tuple[str, Any] | None:
    try:
        return receiver.recv()
    except (EOFError, OSError):  # died before or while sending: nothing, or half a message
        return None
    except Exception as err:  # a result the parent cannot unpickle
        return "error", f"could not read the measurement's result: {type(err).__name__}: {err}"


def _death_text(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if name == "SIGKILL":
            return "killed by SIGKILL (the kernel's out-of-memory killer, or an external kill)"
        return f"killed by signal {name}"
    if exitcode is None:
        return "the measurement process ended without a result"
    return f"the measurement process exited with code {exitcode} without a result"
