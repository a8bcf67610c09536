"""The load generator: one level at a time, at a fixed concurrency or a Poisson request rate.

A level sends requests for at least `min_duration_s` and at least `min_requests`, then
waits for those in flight (each bounded by its timeout), so it always ends. At a
concurrency of N, N workers each send their next request when the last one ends; at a
rate of R requests/s, requests start at exponentially distributed intervals (a Poisson
process, seeded) whatever the server's pace, as open-loop traffic arrives in production.
A worker whose connection was refused waits a little before the next try, so a dead
server yields a countable trickle of errors, not a busy loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.serve.client import RequestResult, payload, stream_request
from bench.serve.wire import NO_COMPRESSION

REFUSED_BACKOFF_S = 0.1


@dataclass(frozen=True)
class Level:
    """Either `concurrency` (closed loop) or `rate` (requests/s, open loop)."""

    concurrency: int | None = None
    rate: float | None = None

    @property
    def label(self) -> str:
        return f"c{self.concurrency}" if self.concurrency is not None else f"r{self.rate:g}"


@dataclass(frozen=True)
class LoadShape:
    api: str  # completions or chat
    model: str  # the name the server serves
    prompts: list[tuple[str, int | None]]  # (text, tokens by the model's tokenizer)
    output_len: int
    force_length: bool
    min_duration_s: float
    min_requests: int
    timeout_s: float
    seed: int = 0


@dataclass
class LevelRun:
    level: Level
    duration_s: float  # first request sent to last one ended
    requests: list[RequestResult]


class _Prompts:
    """The prompt pool, handed out in turn."""

    def __init__(self, shape: LoadShape) -> None:
        self.shape, self.next = shape, 0

    def body(self) -> tuple[dict[str, Any], int | None]:
        text, tokens = self.shape.prompts[self.next % len(self.shape.prompts)]
        self.next += 1
        return payload(self.shape.api, self.shape.model, text, self.shape.output_len, self.shape.force_length), tokens


async def _one(client: httpx.AsyncClient, shape: LoadShape, prompts: _Prompts, start: float) -> RequestResult:
    body, tokens = prompts.body()
    result = await stream_request(client, shape.api, body, shape.timeout_s, start)
    if result.prompt_tokens is None and shape.api == "completions":
        result.prompt_tokens = tokens  # counted by the model's tokenizer when the prompt was built
    return result


def _more(start: float, sent: int, shape: LoadShape) -> bool:
    return time.perf_counter() - start < shape.min_duration_s or sent < shape.min_requests


async def _closed_loop(client, shape: LoadShape, prompts: _Prompts, concurrency: int, start: float):
    results: list[RequestResult] = []
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while _more(start, sent, shape):
            sent += 1
            result = await _one(client, shape, prompts, start)
            results.append(result)
            if result.error == "refused":
                await asyncio.sleep(REFUSED_BACKOFF_S)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def _open_loop(client, shape: LoadShape, prompts: _Prompts, rate: float, start: float):
    rng = random.Random(shape.seed)
    tasks: list[asyncio.Task] = []
    while _more(start, len(tasks), shape):
        tasks.append(asyncio.create_task(_one(client, shape, prompts, start)))
        await asyncio.sleep(rng.expovariate(rate))
    return list(await asyncio.gather(*tasks))


async def run_level(base_url: str, headers: dict[str, str], shape: LoadShape, level: Level) -> LevelRun:
    """Drive one level against `base_url` (the only host it talks to) and return every request's result."""
    width = level.concurrency or max(1, int(level.rate * shape.timeout_s) + 1)
    limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
    # The per-request timeout is enforced around the whole stream; httpx's own only bounds a silent socket.
    async with httpx.AsyncClient(base_url=base_url, headers={**headers, **NO_COMPRESSION}, limits=limits,
                                 timeout=httpx.Timeout(shape.timeout_s)) as client:
        prompts = _Prompts(shape)
        start = time.perf_counter()
        if level.concurrency is not None:
            results = await _closed_loop(client, shape, prompts, level.concurrency, start)
        else:
            results = await _open_loop(client, shape, prompts, level.rate, start)
        duration = time.perf_counter() - start
    results.sort(key=lambda r: r.sent_at)
    return LevelRun(level, duration, results)


async def warm_up(base_url: str, headers: dict[str, str], shape: LoadShape, count: int) -> list[RequestResult]:
    """`count` requests one after another before any level: first-call costs (graph capture, caches) stay out."""
    async with httpx.AsyncClient(base_url=base_url, headers={**headers, **NO_COMPRESSION},
                                 timeout=httpx.Timeout(shape.timeout_s)) as client:
        prompts = _Prompts(shape)
        return [await _one(client, shape, prompts, time.perf_counter()) for _ in range(count)]
