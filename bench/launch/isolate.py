"""Run one measurement in a child process with a timeout.

A model load can segfault, run out of device memory, or hang; none of that may take
the harness (or a sweep) down with it. The child imports its target by name
("module:function", nothing pickled but plain data), runs it, and sends back either
its result dict or the formatted traceback. The parent turns every ending into an
:class:`Outcome`: ok, oom, error or timeout, with the error text.

The child's stdout and stderr go to a log file, at the file-descriptor level so that
the processes it starts (vLLM's engine core and workers) write there too. An engine
that fails in such a process raises its real reason there and leaves the child only a
wrapper ("See root cause above"); the parent then takes the root cause from the log,
so that an out-of-memory in the engine core is recorded as one (`bench.launch.failures`).

The child leads its own process group, so that engine workers it started are found
and killed even after the child itself has crashed: a leftover worker would hold
device memory and spoil the next measurement of a sweep. A fresh process per
measurement also gives clean peak-memory numbers.

The other way round, the child dies with its parent: when `bench` itself is killed
(kill -9, a CI runner's cancel), nobody is left to run the clean-up above, so the
child watches its parent and, once the parent is gone, kills its own process group,
itself and the engine processes it started with it.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import psutil

from bench.launch import failures, progress

ERROR_TAIL_CHARS = 4000
LOG_TAIL_BYTES = 256 * 2**10  # the engine's closing tracebacks, with room to spare
KILL_GRACE_S = 3.0
PARENT_POLL_S = 0.2  # how soon an orphaned child notices that its parent is gone
# multiprocessing's resource tracker, started from the parent with the first child, unlinks the shared memory
# an engine leaves behind (vLLM's, when its processes are stopped) and, as bench exits, warns about each on
# the terminal it inherited: engine noise after bench's own output. The segments are still unlinked; only
# that module's warning is filtered, in the tracker (which reads PYTHONWARNINGS as it starts).
TRACKER_WARNINGS = "ignore::UserWarning:multiprocessing.resource_tracker"


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok" | "oom" | "error" | "timeout"
    value: dict[str, Any] | None
    error: str | None
    duration_s: float
    log_path: str | None = None  # the child's output, when the caller asked to keep it


def _child(target: str, kwargs: dict[str, Any], conn: Any, log_path: str, parent_pid: int) -> None:
    os.setpgrp()  # see the module docstring: the parent kills this group when it is done
    _die_with_parent(parent_pid)
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # torch and NVML number devices alike
    _redirect_output(log_path)
    progress.enable_reporting()  # phase lines go to the log, which the parent tails (bench.launch.progress)
    try:
        module, name = target.split(":")
        value = getattr(importlib.import_module(module), name)(**kwargs)
        if not isinstance(value, dict):
            raise TypeError(f"{target} returned {type(value).__name__}, not a dict")
        conn.send(("ok", value))
    except BaseException as exc:  # everything, including KeyboardInterrupt in the child, is reported
        status = "oom" if failures.chain_is_oom(exc) else "error"
        conn.send((status, traceback.format_exc()[-ERROR_TAIL_CHARS:]))
    finally:
        conn.close()


def _die_with_parent(parent_pid: int) -> None:
    """Kill this process group once `parent_pid` is no longer our parent (it died; we were re-parented).

    A thread rather than a signal handler: Python runs handlers only between bytecodes of the
    main thread, which may sit in a long engine call; the thread runs whenever the GIL is free.
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="bench-parent-watch", daemon=True).start()


def _redirect_output(log_path: str) -> None:
    """Point file descriptors 1 and 2 at the log, so that every process started from here inherits it."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)  # a crash loses nothing already printed


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


def run_isolated(target: str, kwargs: dict[str, Any], timeout_s: float,
                 log_path: str | os.PathLike[str] | None = None) -> Outcome:
    """Call ``target(**kwargs)`` in a fresh spawned process; every ending is an Outcome.

    The child's output (and its descendants') goes to `log_path`, appended; without
    one, to a temporary file that is read for a failure's cause and then removed.
    """
    kept = str(log_path) if log_path is not None else None
    log = Path(kept) if kept else _temporary_log()
    try:
        status, payload, elapsed = _run_child(target, kwargs, timeout_s, str(log))
        if status == "ok":
            return Outcome("ok", payload, None, elapsed, kept)
        status, error = _explain(status, payload, log)
        return Outcome(status, None, error, elapsed, kept)
    finally:
        if kept is None:
            log.unlink(missing_ok=True)


def _explain(status: str, error: str, log: Path) -> tuple[str, str]:
    """The failure's status and text; when the child's error points to a cause elsewhere, the log's cause."""
    if status == "timeout" or not failures.points_elsewhere(error):
        return status, error
    cause = failures.root_cause(_tail(log))
    if cause is None:
        return status, error
    return ("oom" if failures.is_oom(cause) else status), failures.with_cause(cause, error, ERROR_TAIL_CHARS)


def _temporary_log() -> Path:
    fd, path = tempfile.mkstemp(prefix="bench-", suffix=".log")
    os.close(fd)
    return Path(path)


def _tail(log: Path) -> str:
    """The end of the log; empty when the child died before it opened the log."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(handle.seek(0, os.SEEK_END) - LOG_TAIL_BYTES, 0))
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _run_child(target: str, kwargs: dict[str, Any], timeout_s: float, log_path: str) -> tuple[str, Any, float]:
    """(status, value or error text, seconds) of one child run; the child's whole tree is gone on return."""
    context = multiprocessing.get_context("spawn")
    _quiet_resource_tracker()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, kwargs, sender, log_path, os.getpid()),
                              daemon=False)
    start = time.perf_counter()
    root: psutil.Process | None = None
    try:
        process.start()
        root = psutil.Process(process.pid)
        sender.close()  # the parent keeps only its end, so a dead child reads as EOF
        status, payload = _wait_for_ending(receiver, process, timeout_s)
        if status != "timeout":
            process.join(KILL_GRACE_S)  # a child that sent its result but hangs on exit is stopped below
        return status, payload, time.perf_counter() - start
    finally:
        sender.close()
        if root is not None:
            kill_tree(root)
            process.join(KILL_GRACE_S)
            if process.exitcode is not None:
                process.close()
        receiver.close()


def _quiet_resource_tracker() -> None:
    current = os.environ.get("PYTHONWARNINGS", "")
    if TRACKER_WARNINGS not in current:
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [current, TRACKER_WARNINGS]))


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
