"""Why a measurement failed: out of memory or another error, told from the error's own words.

An out-of-memory is a result (a memory claim fails on it); any other error says nothing
about the claim. Engines word it in many ways, and vLLM words it in another process:
its engine core raises the real reason there and bench's child sees only "Engine core
initialization failed. See root cause above". So the words are read from two places:
the child's own exception chain, and the log that the engine's processes wrote into
(`bench.launch.isolate` captures it), where the root cause is the last exception line that
does not itself point elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Lower-case fragments of an exception line ("Type: message") that mean the memory ran out.
OOM_MARKERS = (
    "memoryerror",  # torch.OutOfMemoryError (CUDA, HIP, XPU), Python's MemoryError
    "out of memory",  # "CUDA out of memory. Tried to allocate ...", "CUDA error: out of memory"
    "can't allocate memory",  # torch's CPU allocator: "DefaultCPUAllocator: can't allocate memory: ..."
    "no available memory for the cache blocks",  # vLLM: weights and activations left no KV cache
    "is larger than the available kv cache memory",  # vLLM: one max_model_len sequence does not fit
    "not enough gpu memory",  # vLLM: the weights do not load, or no context length fits
)
# What vLLM's wrapper errors say instead of the reason ("See root cause above", "... for the root cause").
ELSEWHERE_MARKER = "root cause"
CAUSE_CHARS = 1000

# vLLM's log prefix, "(EngineCore pid=7032) ERROR 11-23 21:12:41 [core.py:1510] ", on every logged line.
_LOG_PREFIX = re.compile(r"\([^()]* pid=\d+\) [A-Z]+ \d\d-\d\d \d\d:\d\d:\d\d \[[^\]]*\] ")
_EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)(?::.*)?")


def is_oom(error: str) -> bool:
    """Whether an exception line ("Type: message") says the memory ran out."""
    text = error.lower()
    return any(marker in text for marker in OOM_MARKERS)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """An exception and those that caused it (explicitly, or while handling them), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def chain_is_oom(exc: BaseException) -> bool:
    """Whether an exception, or any exception that caused it, says the memory ran out."""
    return any(is_oom(f"{type(e).__name__}: {e}") for e in exception_chain(exc))


def exception_lines(text: str) -> list[str]:
    """The "Type: message" lines of the tracebacks in a traceback or a log, log prefixes removed.

    Only unindented lines count: a traceback's quoted source lines are indented, so a
    source line that mentions memory is never taken for an error.
    """
    found = []
    for line in text.splitlines():
        prefix = _LOG_PREFIX.search(line)
        body = line[prefix.end():] if prefix else line
        if _EXCEPTION_LINE.fullmatch(body.rstrip()):
            found.append(body.rstrip())
    return found


def points_elsewhere(error: str) -> bool:
    """Whether an error's exception lines name no reason but point to one printed elsewhere."""
    return any(ELSEWHERE_MARKER in line.lower() for line in exception_lines(error))


def root_cause(log: str) -> str | None:
    """The last exception line of a log that gives a reason rather than pointing to one; None if none."""
    causes = [line for line in exception_lines(log) if ELSEWHERE_MARKER not in line.lower()]
    return causes[-1][:CAUSE_CHARS] if causes else None


def with_cause(cause: str, error: str, limit: int) -> str:
    """The root cause first, then as much of the end of the child's own error as fits in `limit`."""
    head = f"{cause}\n(root cause, from the engine's log)\n\n"
    return head + error[-max(limit - len(head), 0):]
