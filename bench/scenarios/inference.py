"""The inference measurement: load, warm up, latency at batch 1, throughput at batch N.

This runs inside the isolated child process (`measure` is the entry point). The
protocol follows what the best benchmarking tools do:

* warm-up requests before anything is timed;
* every request produces exactly `output_len` tokens (end-of-sequence ignored);
* prompts are random token ids from a seeded generator, as vLLM's throughput
  benchmark does, so no cache or tokenizer quirk flatters a number;
* the batch-1 latency loop runs until both a minimum number of iterations and a
  minimum duration are reached, and every raw sample is kept;
* throughput is output tokens over wall time for `batch` requests submitted
  together, repeated and summarised by its median;
* a run at the claimed context length when the run names one, last, so that an
  out-of-memory there fails the run the way it would fail the claim.

Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from bench.backends import EngineSettings, create_backend
from bench.backends.base import Backend, Generation
from bench.launch.emulation import memory_cap
from bench.launch.environment import observed_hardware, software_versions
from bench.launch.progress import counted, phase
from bench.records import stats
from bench.trackers.memory import PeakMemoryTracker


@dataclass(frozen=True)
class InferenceSettings:
    backend: str
    engine: dict[str, Any]  # EngineSettings fields, less the memory cap decided here
    vocab_size: int
    prompt_len: int = 128
    output_len: int = 64
    batch: int = 8
    context: int | None = None
    warmup: int = 2
    min_iterations: int = 5
    min_duration_s: float = 2.0
    throughput_runs: int = 3
    target_budget_bytes: int | None = None  # the claimed card's CUDA memory, when emulating it (see emulation)
    roofline_decode_tokens_per_s: float | None = None  # bound of the card the run uses (None on a CPU)
    gguf_file: dict[str, Any] | None = None  # a real GGUF's provenance: source, revision, bytes, sha256
    seed: int = 0


def random_prompts(count: int, length: int, vocab_size: int, rng: random.Random) -> list[list[int]]:
    # Ids 4.. leave bench's special tokens (unk, bos, eos, pad) out of the prompts.
    return [[rng.randrange(4, vocab_size) for _ in range(length)] for _ in range(count)]


def latency_samples(backend: Backend, s: InferenceSettings, rng: random.Random) -> dict[str, list[float]]:
    ttft, itl, decode_rate, e2e = [], [], [], []
    started = time.perf_counter()
    while len(ttft) < s.min_iterations or time.perf_counter() - started < s.min_duration_s:
        phase(counted("latency iteration", len(ttft) + 1, s.min_iterations))
        (gen,) = backend.generate(random_prompts(1, s.prompt_len, s.vocab_size, rng), s.output_len)
        _check_length(gen, s.output_len)
        times = gen.token_times
        ttft.append(times[0])
        e2e.append(times[-1])
        gaps = [b - a for a, b in zip(times, times[1:])]
        itl.extend(gaps)
        if times[-1] > times[0]:
            decode_rate.append((gen.output_tokens - 1) / (times[-1] - times[0]))
    return {"ttft": ttft, "itl": itl, "decode": decode_rate, "e2e": e2e}


def throughput_samples(backend: Backend, s: InferenceSettings, rng: random.Random) -> tuple[list[float], list[float]]:
    output_rates, total_rates = [], []
    for run in range(s.throughput_runs):
        phase(counted(f"throughput at batch {s.batch}, run", run + 1, s.throughput_runs))
        prompts = random_prompts(s.batch, s.prompt_len, s.vocab_size, rng)
        start = time.perf_counter()
        gens = backend.generate(prompts, s.output_len)
        elapsed = time.perf_counter() - start
        for gen in gens:
            _check_length(gen, s.output_len)
        produced = sum(g.output_tokens for g in gens)
        output_rates.append(produced / elapsed)
        total_rates.append((produced + s.batch * s.prompt_len) / elapsed)
    return output_rates, total_rates


def _check_length(gen: Generation, expected: int) -> None:
    if gen.output_tokens != expected or len(gen.token_times) != expected:
        raise RuntimeError(f"engine produced {gen.output_tokens} tokens ({len(gen.token_times)} stamps), "
                           f"asked for exactly {expected}")


def metric(value: Any, unit: str, samples: list[float] | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "samples": samples}


def measure(settings: dict[str, Any]) -> dict[str, Any]:
    """Child-process entry point: returns metrics, the engine's own report, and the environment."""
    s = InferenceSettings(**settings)
    device = s.engine["device"]
    rng = random.Random(s.seed)
    fraction, emulation = memory_cap(device, s.target_budget_bytes, engine=s.backend)
    engine = EngineSettings(**{**s.engine, "memory_fraction": fraction})
    backend = create_backend(s.backend, engine)
    # vLLM's engine runs in its own processes: this process's CUDA context is bench's, not the engine's.
    with PeakMemoryTracker(device=device, cards=engine.tensor_parallel_size,
                           own_context="exclude" if s.backend == "vllm" else "count") as tracker:
        phase("loading the model")
        start = time.perf_counter()
        backend.load()
        load_s = time.perf_counter() - start
        phase("warm-up")
        for _ in range(s.warmup):
            backend.generate(random_prompts(1, s.prompt_len, s.vocab_size, rng), s.output_len)
        backend.generate(random_prompts(s.batch, s.prompt_len, s.vocab_size, rng), s.output_len)
        if reset := getattr(backend, "reset_perf", None):
            reset()  # an engine's own timing counters then cover the timed phase only, as bench's figures do
        lat = latency_samples(backend, s, rng)
        output_rates, total_rates = throughput_samples(backend, s, rng)
        context = None
        if s.context:
            phase(f"one request at context {s.context:,}")
            prompt = random_prompts(1, max(1, s.context - s.output_len), s.vocab_size, rng)
            (gen,) = backend.generate(prompt, s.output_len)
            _check_length(gen, s.output_len)
            context = gen
        info = backend.engine_info()
    memory = tracker.result()
    backend.close()

    metrics = {
        "load_s": metric(load_s, "s"),
        "ttft_s": metric(stats.median(lat["ttft"]), "s", lat["ttft"]),
        "itl_p50_s": metric(stats.percentile(lat["itl"], 50), "s", lat["itl"]),
        "itl_p99_s": metric(stats.percentile(lat["itl"], 99), "s"),
        "tpot_s": metric(stats.median([(e - t) / (s.output_len - 1) for e, t in zip(lat["e2e"], lat["ttft"])]),
                         "s"),
        "e2e_latency_s": metric(stats.median(lat["e2e"]), "s", lat["e2e"]),
        "decode_tokens_per_s": metric(stats.median(lat["decode"]), "tokens/s", lat["decode"]),
        "throughput_tokens_per_s": metric(stats.median(output_rates), "tokens/s", output_rates),
        "total_throughput_tokens_per_s": metric(stats.median(total_rates), "tokens/s", total_rates),
        "latency_iterations": metric(len(lat["ttft"]), "count"),
        "peak_memory_bytes": metric(memory["peak_memory_bytes"], "bytes"),
    }
    if memory.get("peak_allocated_bytes") is not None:
        metrics["peak_allocated_bytes"] = metric(memory["peak_allocated_bytes"], "bytes")
    if s.roofline_decode_tokens_per_s:
        bound = s.roofline_decode_tokens_per_s
        metrics["roofline_decode_tokens_per_s"] = metric(bound, "tokens/s")
        metrics["roofline_fraction"] = metric(metrics["decode_tokens_per_s"]["value"] / bound, "ratio")
    if context is not None:
        metrics["context_tokens"] = metric(s.context, "tokens")
        metrics["context_ttft_s"] = metric(context.token_times[0], "s")
    return {
        "metrics": metrics,
        "memory": memory,
        "engine": info,
        "emulation": emulation,
        "hardware": observed_hardware(device),
        "software": software_versions(),
    }
