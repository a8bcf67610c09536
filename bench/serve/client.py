"""One streamed request to an OpenAI-compatible server, timed chunk by chunk.

Every outcome is a result, never an exception: a refused connection, an HTTP error, a
stream that stops before its end, or a request past its timeout comes back as a
:class:`RequestResult` with `error` set, so the load level counts it and goes on.

A *token chunk* is a streamed chunk that carries generated text: `choices[0].text` for
completions, `choices[0].delta.content` for chat (an empty string counts: a token whose
text is empty, such as part of a multi-byte character; the first chat chunk, which only
names the role, does not). Servers send one chunk per decoding step, so the gaps between
token chunks are the inter-token latencies.

A stream must end with a finish reason and `[DONE]`; one that stops short is `cut`.
Output tokens are counted, in this order, from the server's `usage` (asked for with
`stream_options.include_usage`), from `finish_reason == "length"` (the server stopped at
`max_tokens`, so exactly that many were generated), or are left unknown. Text is never split
to count tokens.

The server is untrusted (`bench.serve.wire`): every chunk is checked for the shape the API gives it
(`malformed` otherwise); a line past the line cap, or more token chunks than `max_tokens` allows, ends
the request as `oversized`, which bounds both bench's memory and the timings a record keeps; usage
counts must be counts that agree with what was streamed (`bad-usage` otherwise, and the request's
figures are not used).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from bench.records.stats import percentile
from bench.serve.prompts import TOKENS_PER_BYTE
from bench.serve.wire import (
    MAX_ERROR_BYTES,
    BadAnswer,
    count,
    lines,
    mapping,
    optional_text,
    parse_json,
    read_body,
    shown,
    text,
)

API_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
# Token chunks beyond max_tokens: a chat's opening chunk (its role, with empty content) and a closing chunk
# carrying only the finish reason may hold no token; every other token chunk holds at least one.
EXTRA_CHUNKS = 2
# Tokens a chat template or special tokens may add to a prompt beyond its text's (at most TOKENS_PER_BYTE a byte).
PROMPT_TEMPLATE_TOKENS = 8192
# Chunk arrival times a request keeps in its record; a longer answer keeps these and a summary of its gaps.
KEPT_CHUNK_TIMES = 1024


@dataclass
class RequestResult:
    """What one request did; times in seconds from the moment it was sent."""

    sent_at: float  # seconds from the start of its level
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    tokens_from: str | None = None  # usage, length, or None when unknown
    ttft_s: float | None = None
    e2e_s: float | None = None
    chunk_times_s: list[float] = field(default_factory=list)  # arrival of each token chunk
    finish_reason: str | None = None
    # refused, http-<status>, cut, timeout, error, malformed, oversized or bad-usage (docs/metrics.md)
    error: str | None = None
    detail: str | None = None  # the error's text

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def itls_s(self) -> list[float]:
        times = self.chunk_times_s
        return [b - a for a, b in zip(times, times[1:])]

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first: (e2e - ttft) / (output tokens - 1)."""
        if self.e2e_s is None or self.ttft_s is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    def to_dict(self) -> dict[str, Any]:
        """The record's copy: a long answer keeps its first ``KEPT_CHUNK_TIMES`` arrivals, its chunk count
        and its gaps' median, 99th percentile and maximum, so a record stays small whatever `--output-len`."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        if len(self.chunk_times_s) > KEPT_CHUNK_TIMES:
            gaps = self.itls_s
            out["chunk_times_s"] = self.chunk_times_s[:KEPT_CHUNK_TIMES]
            out["chunks"] = len(self.chunk_times_s)
            out["itl_summary_s"] = {"p50": percentile(gaps, 50), "p99": percentile(gaps, 99), "max": max(gaps)}
        return out


def payload(api: str, model: str, prompt: str, output_len: int, force_length: bool) -> dict[str, Any]:
    """The request body: greedy, streamed, usage asked for; the output length forced where asked.

    `min_tokens` (vLLM, llama-cpp-python) and `ignore_eos` (vLLM) keep generating to `max_tokens`;
    servers that do not know them ignore them, and the count then comes from usage.
    """
    body: dict[str, Any] = {"model": model, "max_tokens": output_len, "temperature": 0.0, "stream": True,
                            "stream_options": {"include_usage": True}}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if force_length:
        body.update(min_tokens=output_len, ignore_eos=True)
    return body


async def stream_request(client: httpx.AsyncClient, api: str, body: dict[str, Any], timeout_s: float,
                         level_start: float) -> RequestResult:
    """Send `body` to the client's base URL and time its stream; never raises for the server's faults."""
    start = time.perf_counter()
    result = RequestResult(sent_at=start - level_start)
    try:
        await asyncio.wait_for(_consume(client, api, body, start, result), timeout_s)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        result.error, result.detail = "timeout", f"no complete answer within {timeout_s:g} s"
    except BadAnswer as err:
        result.error, result.detail = err.kind, err.detail
        result.prompt_tokens = result.output_tokens = result.tokens_from = None  # the server's, not to be used
    except httpx.ConnectError as err:
        result.error, result.detail = "refused", text(str(err) or type(err).__name__)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as err:
        result.error, result.detail = "cut", text(str(err) or type(err).__name__)
    except httpx.HTTPError as err:
        result.error, result.detail = "error", text(f"{type(err).__name__}: {err}")
    if result.error is None:
        result.e2e_s = time.perf_counter() - start
    return result


async def _consume(client: httpx.AsyncClient, api: str, body: dict[str, Any], start: float,
                   result: RequestResult) -> None:
    async with client.stream("POST", API_PATHS[api], json=body) as response:
        if response.status_code != 200:
            words = await read_body(response, MAX_ERROR_BYTES, cut=True)
            result.error, result.detail = f"http-{response.status_code}", text(words.decode(errors="replace"), 200)
            return
        kind = response.headers.get("content-type", "")
        if "event-stream" not in kind:
            raise BadAnswer("malformed", f"a {text(kind or 'untyped', 60)} answer, not an event stream")
        stream = _Stream(api, body["max_tokens"], start, result)
        async for line in lines(response):
            if not line.startswith("data:"):
                continue  # SSE comments, event names and blank separators
            data = line[5:].strip()
            if data == "[DONE]":
                stream.done = True
                break
            stream.take(parse_json(data))
            if result.error:
                return
    stream.finish(_prompt_bound(body))


class _Stream:
    """One answer's chunks as they arrive: their times, finish reason and usage, each checked for shape."""

    def __init__(self, api: str, max_tokens: int, start: float, result: RequestResult) -> None:
        self.api, self.max_tokens, self.start, self.result = api, max_tokens, start, result
        self.done, self.empty_finish = False, False

    def take(self, value: Any) -> None:
        """One chunk; an error the server reports inside the stream ends the request as `error`."""
        chunk = mapping(value, "a chunk")
        if chunk.get("error") is not None:  # some servers report a failure inside the stream
            self.result.error, self.result.detail = "error", text(chunk["error"], 200)
            return
        choice = _first_choice(chunk)
        token = _token_text(self.api, choice) if choice is not None else None
        if token is not None:
            self._arrived()
        if choice is not None and (finish := optional_text(choice.get("finish_reason"), "finish_reason")):
            self.result.finish_reason = text(finish, 40)
            self.empty_finish = token == ""
        if chunk.get("usage") is not None:
            usage = mapping(chunk["usage"], "usage")
            self.result.prompt_tokens = count(usage.get("prompt_tokens"), "usage.prompt_tokens")
            self.result.output_tokens = count(usage.get("completion_tokens"), "usage.completion_tokens")
            self.result.tokens_from = "usage" if self.result.output_tokens is not None else None

    def _arrived(self) -> None:
        if len(self.result.chunk_times_s) == self.max_tokens + EXTRA_CHUNKS:
            raise BadAnswer("oversized", f"more than {self.max_tokens + EXTRA_CHUNKS} token chunks for "
                                         f"max_tokens {self.max_tokens}")
        now = time.perf_counter() - self.start
        self.result.chunk_times_s.append(now)
        if self.result.ttft_s is None:
            self.result.ttft_s = now

    def finish(self, prompt_bound: int) -> None:
        """After the stream: was it whole, and do its counts agree with what came?"""
        result = self.result
        if not self.done:
            result.error, result.detail = "cut", "the stream ended before [DONE]"
        elif result.ttft_s is None:
            result.error, result.detail = "error", "the stream carried no token"
        elif result.finish_reason is None:  # a server that dropped the request (llama-cpp-python interrupts)
            result.error, result.detail = "cut", "the stream ended without a finish reason"
        else:
            _check_counts(result, self.max_tokens, prompt_bound)
            _count_tokens(result, self.max_tokens, self.empty_finish)


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any] | None:
    choices = chunk.get("choices")
    if choices is None:
        return None
    if not isinstance(choices, list):
        raise BadAnswer("malformed", f"choices is {shown(choices)}, not a list")
    return mapping(choices[0], "choices[0]") if choices else None


def _token_text(api: str, choice: dict[str, Any]) -> str | None:
    if api == "chat":
        delta = choice.get("delta")
        return None if delta is None else optional_text(mapping(delta, "delta").get("content"), "delta.content")
    return optional_text(choice.get("text"), "text")


def _prompt_bound(body: dict[str, Any]) -> int:
    """The most tokens the request's prompt can be: ``TOKENS_PER_BYTE`` per byte of its text, plus a template's."""
    prompt = body.get("prompt") or body["messages"][0]["content"]
    return TOKENS_PER_BYTE * len(prompt.encode()) + PROMPT_TEMPLATE_TOKENS


def _check_counts(result: RequestResult, max_tokens: int, prompt_bound: int) -> None:
    """Usage that cannot be true is `bad-usage`: more output than `max_tokens`, fewer output tokens than the
    token chunks streamed, or a prompt longer than its text allows."""
    chunks = len(result.chunk_times_s)
    if result.tokens_from == "usage" and result.output_tokens > max_tokens:
        raise BadAnswer("bad-usage", f"usage says {result.output_tokens} output tokens; max_tokens was {max_tokens}")
    if result.tokens_from == "usage" and result.output_tokens < chunks - EXTRA_CHUNKS:
        raise BadAnswer("bad-usage", f"usage says {result.output_tokens} output tokens; {chunks} token chunks came")
    if result.prompt_tokens is not None and result.prompt_tokens > prompt_bound:
        raise BadAnswer("bad-usage", f"usage says {result.prompt_tokens} prompt tokens; the prompt can hold at "
                                     f"most {prompt_bound}")


def _count_tokens(result: RequestResult, max_tokens: int, empty_finish: bool) -> None:
    """Output tokens from usage, else from a stop at `max_tokens`; and a closing chunk that only carried
    the finish reason (llama-cpp-python sends one after the last token, vLLM puts it on the last token)
    is not a token: with the count known, one chunk too many means the last was that closing chunk."""
    if result.tokens_from is None and result.finish_reason == "length":
        result.output_tokens, result.tokens_from = max_tokens, "length"
    if empty_finish and result.output_tokens is not None and len(result.chunk_times_s) == result.output_tokens + 1:
        result.chunk_times_s.pop()
