"""A measurement-shaped child for the progress tests: phases, engine chatter on both streams, pauses."""

from __future__ import annotations

import sys
import time

from bench.launch.progress import counted, phase

PHASES = ("loading the model", counted("latency iteration", 1, 2), counted("latency iteration", 3, 2))
ENGINE_LINES = ("INFO engine: weights loaded", "WARNING engine: slow tokenizer")


def chatty(pause_s: float) -> dict:
    for step, line in zip(PHASES, (*ENGINE_LINES, "")):
        phase(step)
        if line:
            print(line, file=sys.stderr if line.startswith("WARNING") else sys.stdout, flush=True)
        time.sleep(pause_s)  # long enough for the live display to draw the phase
    return {"phases": len(PHASES)}


def leaks_shared_memory() -> dict:
    """Leave a shared-memory segment behind, as an engine killed mid-run does; return its name."""
    from multiprocessing import shared_memory

    segment = shared_memory.SharedMemory(create=True, size=4096)
    segment.close()
    return {"name": segment.name}
