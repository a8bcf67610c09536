"""llama.cpp as an inference engine, through llama-cpp-python's C API (ctypes).

The low-level API is driven directly: prompt tokens go in through `llama_decode` in
chunks of `n_batch`, each next token is the argmax of the last logits (greedy, so the
end-of-sequence token is just another token and every request produces exactly the
asked length), and each token is time-stamped as its logits come back. The KV cache
is cleared before every request, so no prefix is reused between requests.

Settings are llama.cpp's defaults (mmap, weights repacked for the CPU's kernels on x86, f16 KV,
flash attention auto) with one thread per core; BENCH_LLAMACPP_THREADS, BENCH_LLAMACPP_MMAP=0 and
BENCH_LLAMACPP_REPACK=0 change them for an experiment, and the record says what ran.

One sequence at a time: a batch of requests is generated one request after another,
and the record says so (`batching: "sequential"`). llama.cpp's context is made for one
sequence of `n_ctx = max_model_len` tokens, the KV cache in f16 (llama.cpp's default).

Memory: llama.cpp's own account, read from the lines it logs while loading (model
buffers, the repacked copy of weights on x86, KV buffer, output buffer, compute buffer),
each parsed into bytes; the log is captured through `llama_log_set` and still written to
stderr (the run's log file). llama.cpp's timing counters (prompt and generation) are
recorded beside bench's own figures.

On CUDA every layer is offloaded (`n_gpu_layers` 999), which a CPU-only build would ignore: such a
build refuses `--device cuda`. Nothing caps llama.cpp's memory, so a capped run is refused before it
starts (`bench.jobs.preflight.check_llamacpp_cap`) and the record says `memory_cap: none`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import time
from typing import Any

import llama_cpp
import numpy as np

from bench.backends.base import EngineSettings, Generation

MIB = 2**20
# "load_tensors:   CPU_Mapped model buffer size =   123.45 MiB" and the KV, output, compute lines.
_BUFFER = re.compile(r"(?P<where>[\w.\-]+)\s+(?P<kind>model|KV|output|compute|RS) buffer size\s*=\s*"
                     r"(?P<mib>[\d.]+) MiB")

# "llama_kv_cache: size =    0.25 MiB (   256 cells,   2 layers,  1/1 seqs), K (f16): ..., V (f16): ..."
_KV_CACHE = re.compile(r"llama_kv_cache: size =\s*[\d.]+ MiB \(\s*(?P<cells>\d+) cells,\s*(?P<layers>\d+) layers")

# The log callback must outlive every call into llama.cpp: kept at module level. Entries: (level, text).
_LOG: list[tuple[int, str]] = []
# ggml_log_level (ggml.h): debug lines (graph dumps) are dropped, with their continuations.
_DEBUG, _WARN, _ERROR, _CONT = 1, 3, 4, 5
_last_level = [0]


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if level != _CONT:
        _last_level[0] = level
    if _last_level[0] == _DEBUG:
        return
    line = text.decode("utf-8", errors="replace")
    _LOG.append((_last_level[0], line))
    with contextlib.suppress(OSError, ValueError):  # stderr closed at exit: the line is kept in _LOG all the same
        sys.stderr.write(line)
        sys.stderr.flush()


def capture_log() -> None:
    """Route llama.cpp's and ggml's log through bench (replaces llama-cpp-python's own callback)."""
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


def parse_buffers(log: str) -> dict[str, Any]:
    """llama.cpp's memory account from its log: bytes per buffer kind, and per backend buffer type.

    Every KV line is a buffer of its own (Llama 4's chunked layers have a second KV cache beside
    the global one), so KV lines are summed; a model, output or compute buffer logged again (a graph
    reserved twice) counts once, at its last size. Model buffers of several types (CPU_Mapped, and
    CPU_REPACK where weights are repacked for the CPU's kernels) are kept apart and summed.
    """
    found: dict[str, dict[str, int]] = {}
    for m in _BUFFER.finditer(log):
        kind, where, size = m["kind"].lower(), m["where"], round(float(m["mib"]) * MIB)
        places = found.setdefault(kind, {})
        if kind in ("kv", "rs"):
            places[where] = places.get(where, 0) + size
        else:
            places[where] = size
    out: dict[str, Any] = {f"{kind}_buffer_bytes": sum(places.values()) for kind, places in found.items()}
    out["buffers"] = found
    # Cells per KV cache (llama.cpp rounds n_ctx up to a multiple of 256) and the layers each holds.
    out["kv_caches"] = [{"cells": int(m["cells"]), "layers": int(m["layers"])} for m in _KV_CACHE.finditer(log)]
    return out


def load_error(entries: list[tuple[int, str]], path: str) -> str:
    """One line saying why llama.cpp refused the file: what it logged as errors (else warnings)."""
    for wanted in (_ERROR, _WARN):
        reasons = [text.strip() for level, text in entries if level == wanted and text.strip()]
        if reasons:
            break
    reason = "; ".join(dict.fromkeys(reasons))[-600:]
    return f"llama.cpp could not load {os.path.basename(path)}" + (f": {reason}" if reason else "")


def threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LlamaCppBackend:
    name = "llama.cpp"
    SWA_FULL = False  # see load(): sliding-window layers keep their window only

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.model: Any = None
        self.ctx: Any = None
        self.n_vocab = 0
        self.n_batch = min(512, settings.max_model_len)
        # llama.cpp's defaults, as a user's llama.cpp runs them; the environment can change three of
        # them for an experiment, and the record says which ran.
        self.n_threads = int(os.environ.get("BENCH_LLAMACPP_THREADS") or threads())
        mmap = os.environ.get("BENCH_LLAMACPP_MMAP", "1") != "0"
        self.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if mmap else llama_cpp.LLAMA_LOAD_MODE_NONE
        self.use_extra_bufts = os.environ.get("BENCH_LLAMACPP_REPACK", "1") != "0"
        self._log_start = 0
        # The context's settings, read back from llama.cpp's defaults when the context is made.
        self.flash_attn_type: int | None = None  # -1 auto, 0 off, 1 on
        self.type_k: int | None = None  # ggml type of the K cache (1: F16)

    def load(self) -> None:
        s = self.settings
        if s.device == "cuda" and not llama_cpp.llama_supports_gpu_offload():
            # A CPU-only build ignores n_gpu_layers: the run would be on the CPU and recorded as CUDA.
            raise RuntimeError("this llama-cpp-python build cannot offload to a GPU (a CPU-only build): --device "
                               "cuda would run on the CPU; install a CUDA build (CMAKE_ARGS=-DGGML_CUDA=on) or use "
                               "--device cpu")
        capture_log()
        llama_cpp.llama_backend_init()
        self._log_start = len(_LOG)
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = 999 if s.device == "cuda" else 0
        mparams.load_mode = self.load_mode
        mparams.use_extra_bufts = self.use_extra_bufts
        self.model = llama_cpp.llama_model_load_from_file(s.model_path.encode(), mparams)
        if not self.model:
            error = load_error(_LOG[self._log_start:], s.model_path)
            raise (MemoryError if "failed to allocate" in error else RuntimeError)(error)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = s.max_model_len
        cparams.n_batch = self.n_batch
        cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = 1
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        cparams.no_perf = False
        # Sliding-window (chunked) layers keep only their window, as llama.cpp's own tools do (the
        # library's default keeps n_ctx cells in every layer).
        cparams.swa_full = self.SWA_FULL
        self.flash_attn_type = int(cparams.flash_attn_type)
        self.type_k = int(cparams.type_k)
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            error = load_error(_LOG[self._log_start:], s.model_path).replace("could not load",
                                                                             "could not make a context for")
            # The KV cache or compute buffers did not fit (ggml's buffer, or llama.cpp's own tables through
            # C++'s allocator): an out-of-memory, recorded as one.
            out_of_memory = "failed to allocate" in error or "bad_alloc" in error
            raise (MemoryError if out_of_memory else RuntimeError)(error)
        vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self.memory = llama_cpp.llama_get_memory(self.ctx)

    def _decode(self, tokens: list[int]) -> np.ndarray:
        """Feed `tokens` (in n_batch chunks) and return the last position's logits."""
        for i in range(0, len(tokens), self.n_batch):
            chunk = tokens[i:i + self.n_batch]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            status = llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(array, len(chunk)))
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status} (1: no KV cache slot for the batch; "
                                   f"<0: error) with context {self.settings.max_model_len}")
        logits = llama_cpp.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(logits, shape=(self.n_vocab,))

    def _one(self, prompt: list[int], max_new_tokens: int) -> Generation:
        if len(prompt) + max_new_tokens - 1 > self.settings.max_model_len:
            raise ValueError(f"{len(prompt)} prompt + {max_new_tokens} new tokens exceed the context of "
                             f"{self.settings.max_model_len}")
        llama_cpp.llama_memory_clear(self.memory, True)
        start = time.perf_counter()
        times: list[float] = []
        logits = self._decode(list(prompt))
        for i in range(max_new_tokens):
            token = int(np.argmax(logits))
            times.append(time.perf_counter() - start)
            if i + 1 < max_new_tokens:
                logits = self._decode([token])
        return Generation(output_tokens=len(times), token_times=times)

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[Generation]:
        """Each request in turn (sequential batching); each request's stamps start at its own submission.

        For a batch, the stamps of request k are offset by the time requests before it took, so
        that every stamp is seconds since the batch was submitted, as the interface says.
        """
        out = []
        batch_start = time.perf_counter()
        for prompt in prompts:
            offset = time.perf_counter() - batch_start
            gen = self._one(prompt, max_new_tokens)
            gen.token_times = [t + offset for t in gen.token_times]
            out.append(gen)
        return out

    def perf(self) -> dict[str, float]:
        """llama.cpp's own timing counters since the context was made (or last reset)."""
        data = llama_cpp.llama_perf_context(self.ctx)
        return {"t_load_ms": data.t_load_ms, "t_prompt_eval_ms": data.t_p_eval_ms, "n_prompt_eval": data.n_p_eval,
                "t_eval_ms": data.t_eval_ms, "n_eval": data.n_eval}

    def reset_perf(self) -> None:
        llama_cpp.llama_perf_context_reset(self.ctx)

    def engine_info(self) -> dict[str, Any]:
        from bench.weights.synthetic_gguf import file_type

        log = "".join(text for _, text in _LOG[self._log_start:])
        info: dict[str, Any] = {
            "engine": "llama.cpp",
            "llama_cpp_python": getattr(llama_cpp, "__version__", None),
            "weights_format": file_type(self.settings.model_path),
            "batching": "sequential",
            "n_ctx": llama_cpp.llama_n_ctx(self.ctx) if self.ctx else self.settings.max_model_len,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_batch,
            "n_seq_max": 1,
            "n_threads": self.n_threads,
            "n_threads_batch": self.n_threads,
            "load_mode": (llama_cpp.llama_load_mode_name(self.load_mode) or b"").decode() or self.load_mode,
            "use_mmap": self.load_mode in (llama_cpp.LLAMA_LOAD_MODE_MMAP, llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK),
            "use_mlock": self.load_mode in (llama_cpp.LLAMA_LOAD_MODE_MLOCK,
                                            llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK),
            # Extra buffer types: on x86, Q4_0/Q4_K/IQ4_NL weights get a repacked copy (CPU_REPACK) for
            # faster kernels; with mmap the mapped originals stay in the page cache beside it.
            "repack": self.use_extra_bufts,
            "flash_attn_type": self.flash_attn_type,  # -1 auto, 0 off, 1 on
            "swa_full": self.SWA_FULL,
            "kv_type": "f16" if self.type_k == 1 else self.type_k,
            "n_gpu_layers": 999 if self.settings.device == "cuda" else 0,
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            # llama.cpp allocates its own buffers; n_gpu_layers places layers, it caps nothing.
            "memory_cap": "none",
            "model_tensor_bytes": int(llama_cpp.llama_model_size(self.model)) if self.model else None,
            "model_params": int(llama_cpp.llama_model_n_params(self.model)) if self.model else None,
            "n_vocab": self.n_vocab,
            # The CPU features llama.cpp was built for and uses (AVX2, AVX512, ...): they decide its kernels.
            "system_info": (llama_cpp.llama_print_system_info() or b"").decode(errors="replace").strip(" |"),
        }
        info.update(parse_buffers(log))
        info["buffer_log"] = [line.strip() for line in log.splitlines() if "buffer size" in line or
                              ("llama_kv_cache" in line and "size" in line)]
        if self.ctx:
            info["perf"] = self.perf()
        return info

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None
