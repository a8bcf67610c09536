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
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

API_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


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
    error: str | None = None  # refused, http-<status>, cut, timeout, or error
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
        return {k: v for k, v in asdict(self).items() if v is not None}


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


def _token_text(api: str, chunk: dict[str, Any]) -> str | None:
    choices = chunk.get("choices") or []
    if not choices:
        return None
    if api == "chat":
        return (choices[0].get("delta") or {}).get("content")
    return choices[0].get("text")


async def stream_request(client: httpx.AsyncClient, api: str, body: dict[str, Any], timeout_s: float,
                         level_start: float) -> RequestResult:
    """Send `body` to the client's base URL and time its stream; never raises for the server's faults."""
    start = time.perf_counter()
    result = RequestResult(sent_at=start - level_start)
    try:
        await asyncio.wait_for(_consume(client, api, body, start, result), timeout_s)
    except asyncio.TimeoutError:
        result.error, result.detail = "timeout", f"no complete answer within {timeout_s:g} s"
    except httpx.ConnectError as err:
        result.error, result.detail = "refused", str(err) or type(err).__name__
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as err:
        result.error, result.detail = "cut", str(err) or type(err).__name__
    except (httpx.HTTPError, ValueError) as err:  # ValueError: a chunk that is not JSON
        result.error, result.detail = "error", f"{type(err).__name__}: {err}"
    if result.error is None:
        result.e2e_s = time.perf_counter() - start
    return result


async def _consume(client: httpx.AsyncClient, api: str, body: dict[str, Any], start: float,
                   result: RequestResult) -> None:
    async with client.stream("POST", API_PATHS[api], json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")[:200]
            result.error, result.detail = f"http-{response.status_code}", text
            return
        done, empty_finish = False, False
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:  # some servers report a failure inside the stream
                result.error, result.detail = "error", str(chunk["error"])[:200]
                return
            text = _token_text(api, chunk)
            if text is not None:
                now = time.perf_counter() - start
                result.chunk_times_s.append(now)
                if result.ttft_s is None:
                    result.ttft_s = now
            choices = chunk.get("choices") or []
            if choices and choices[0].get("finish_reason"):
                result.finish_reason = choices[0]["finish_reason"]
                empty_finish = text == ""
            if chunk.get("usage"):
                result.prompt_tokens = chunk["usage"].get("prompt_tokens")
                result.output_tokens = chunk["usage"].get("completion_tokens")
                result.tokens_from = "usage"
        if not done:
            result.error, result.detail = "cut", "the stream ended before [DONE]"
        elif result.ttft_s is None:
            result.error, result.detail = "error", "the stream carried no token"
        elif result.finish_reason is None:  # a server that dropped the request (llama-cpp-python interrupts)
            result.error, result.detail = "cut", "the stream ended without a finish reason"
        else:
            _count_tokens(result, body["max_tokens"], empty_finish)


def _count_tokens(result: RequestResult, max_tokens: int, empty_finish: bool) -> None:
    """Output tokens from usage, else from a stop at `max_tokens`; and a closing chunk that only carried
    the finish reason (llama-cpp-python sends one after the last token, vLLM puts it on the last token)
    is not a token: with the count known, one chunk too many means the last was that closing chunk."""
    if result.tokens_from is None and result.finish_reason == "length":
        result.output_tokens, result.tokens_from = max_tokens, "length"
    if empty_finish and result.output_tokens is not None and len(result.chunk_times_s) == result.output_tokens + 1:
        result.chunk_times_s.pop()
