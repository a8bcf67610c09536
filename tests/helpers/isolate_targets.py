"""Functions the isolation tests run in child processes (imported there by name)."""

from __future__ import annotations

import gc
import os
import signal
import struct
import subprocess
import sys
import time
from multiprocessing.connection import Connection


class OutOfMemoryError(RuntimeError):
    """Named like torch's, which is how the parent recognises an out-of-memory."""


def returns(x: int) -> dict:
    return {"double": 2 * x, "pid": os.getpid()}


def raises() -> dict:
    raise ValueError("the engine refused the config")  # a source line that says out of memory is no OOM


def runs_out_of_memory() -> dict:
    raise OutOfMemoryError("Tried to allocate 2.00 GiB")


def says_out_of_memory() -> dict:
    raise RuntimeError("CUDA error: out of memory")


def fails_because_of_an_oom() -> dict:
    try:
        raise OutOfMemoryError("Tried to allocate 2.00 GiB")
    except OutOfMemoryError as err:
        raise RuntimeError("engine core initialisation failed") from err


def _start_grandchild(pid_file: str, ignore_sigterm: bool = False) -> None:
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_sigterm else ""
    grandchild = subprocess.Popen([sys.executable, "-c", f"import signal, time; {ignore}time.sleep(60)"])
    with open(pid_file, "w") as handle:
        handle.write(f"{os.getpid()} {grandchild.pid}")


def hangs_with_a_grandchild(pid_file: str, ignore_sigterm: bool = False) -> dict:
    _start_grandchild(pid_file, ignore_sigterm)
    time.sleep(60)
    return {}


def segfaults() -> dict:
    os.kill(os.getpid(), signal.SIGSEGV)
    return {}


def segfaults_leaving_a_grandchild(pid_file: str) -> dict:
    _start_grandchild(pid_file)
    return segfaults()


def is_killed() -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def dies_halfway_through_sending() -> dict:
    """Write the header of a 1000-byte message and 10 bytes of it to the parent, then die."""
    (conn,) = [c for c in gc.get_objects() if isinstance(c, Connection) and not c.closed and c.writable]
    os.write(conn.fileno(), struct.pack("!i", 1000) + b"x" * 10)
    os._exit(3)


def _cannot_be_rebuilt() -> None:
    raise RuntimeError("this object cannot be rebuilt in the parent")


class Unreadable:
    def __reduce__(self):
        return _cannot_be_rebuilt, ()


def returns_what_the_parent_cannot_read() -> dict:
    return {"engine": Unreadable()}


def returns_a_list() -> list:
    return [1, 2]


def allocates_beyond_memory() -> dict:
    """Ask torch's CPU allocator for 4 EiB: it refuses with its own words, in this process."""
    import torch

    torch.empty(2**62, dtype=torch.uint8)
    return {}


def fails_like_an_engine_core(code: str) -> dict:
    """Run `code` in a grandchild, as vLLM runs its engine core, and raise vLLM's wrapper when it fails.

    The grandchild's traceback reaches only the stderr it inherited; the child itself
    knows no more than the exit code.
    """
    print("the child's own output", flush=True)
    exitcode = subprocess.run([sys.executable, "-c", code]).returncode
    raise RuntimeError(f"Engine core initialization failed. See root cause above. Failed core proc(s): "
                       f"{{'EngineCore': {exitcode}}}")


def measures_within_an_address_limit(settings: dict, headroom_bytes: int) -> dict:
    """bench's inference measurement with this process's address space capped `headroom_bytes` above what it
    holds: an allocation past that fails whatever the kernel's overcommit policy would have granted."""
    import resource

    import psutil

    from bench.scenarios.inference import measure

    held = psutil.Process().memory_info().vms
    resource.setrlimit(resource.RLIMIT_AS, (held + headroom_bytes, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return measure(settings)
