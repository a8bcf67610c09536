"""A server's answers read as untrusted input: bounded in time and size, checked for shape.

`bench serve URL` talks to a server it does not control, so nothing the server sends may end a
sweep, hold bench past its deadlines, or grow bench's memory or its record without bound:

- every call has one deadline for its whole answer: httpx's own timeout bounds each read, so a
  server sending one byte every few seconds would hold a call that relied on it forever;
- a body is read up to ``MAX_BODY_BYTES`` and a streamed line up to ``MAX_LINE_BYTES``, as the raw
  bytes sent: bench asks for no compression (`identity`), so a compressed answer, which could
  inflate a thousandfold in one read, is itself malformed;
- a value not of the shape the OpenAI API gives it is a :class:`BadAnswer` of a named kind, which
  the caller counts against its request or reports in one line;
- text that reaches a record is made printable and bounded (:func:`text`), and counts are checked
  to be counts (:func:`count`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

MAX_LINE_BYTES = 1 << 20  # one streamed line: a token's chunk is well under 1 KiB, with logprobs a few KiB
MAX_BODY_BYTES = 4 << 20  # one JSON answer: a model list, a version, the tokens of one prompt
MAX_ERROR_BYTES = 4096  # of an HTTP error's body, read for its first words
DISCOVERY_DEADLINE_S = 10.0  # one discovery call (model list, version, tokenize), at most
TEXT_CHARS = 300  # of a server's text kept in a record (an error's words, a version)
NAME_CHARS = 4096  # of a served model's name: a local path can be long, a megabyte of name is not a name
MAX_COUNT = 10**9  # more tokens than any context holds
NO_COMPRESSION = {"Accept-Encoding": "identity"}


class BadAnswer(Exception):
    """An answer bench cannot use; `kind` names why (a request's error kind), `detail` says what came."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def text(value: Any, limit: int = TEXT_CHARS) -> str:
    """A server's value as record-safe text: a non-string as its JSON (so a secret inside stays in a form the
    store looks for), lone surrogates (which UTF-8 cannot encode, so a write would fail) and control
    characters replaced, cut to `limit` characters."""
    if not isinstance(value, str):
        try:
            value = json.dumps(value, ensure_ascii=False)
        except (RecursionError, TypeError, ValueError):  # parsed at the parser's depth limit, too deep to write
            value = f"a {type(value).__name__} nested too deep to show"
    value = value[: limit + 1]
    cleaned = "".join("\ufffd" if unicodedata.category(c) in ("Cs", "Cc") else c for c in value)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def shown(value: Any, limit: int = 80) -> str:
    """A server's value as it came, for a message: JSON, so the string "7" reads apart from the number 7."""
    return text(value if not isinstance(value, str) else json.dumps(value, ensure_ascii=False), limit)


def count(value: Any, what: str) -> int | None:
    """A token count from a server: None when absent, else a whole number from 0 to ``MAX_COUNT``
    (an integral float is taken); a string, a negative or a fraction is a `bad-usage` answer."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise BadAnswer("bad-usage", f"{what} is {shown(value, 40)}, not a count of tokens")
    return value


def mapping(value: Any, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else a `malformed` answer naming `what` it should have been."""
    if not isinstance(value, dict):
        raise BadAnswer("malformed", f"{what} is {shown(value)}, not an object")
    return value


def optional_text(value: Any, what: str) -> str | None:
    """A string field that may be absent or null; anything else is `malformed`."""
    if value is not None and not isinstance(value, str):
        raise BadAnswer("malformed", f"{what} is {shown(value)}, not a string")
    return value


def _check_uncompressed(response: httpx.Response) -> None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BadAnswer("malformed", f"the answer is {text(encoding, 40)}-compressed although none was asked for")


async def read_body(response: httpx.Response, limit: int, cut: bool = False) -> bytes:
    """The body's raw bytes, at most `limit` of them: beyond, an `oversized` answer, or with `cut` (an
    error page, read for its first words) the first `limit` bytes, the rest left unread."""
    _check_uncompressed(response)
    data = bytearray()
    async for piece in response.aiter_raw():
        data += piece
        if len(data) > limit:
            if cut:
                return bytes(data[:limit])
            raise BadAnswer("oversized", f"an answer of more than {limit} bytes")
    return bytes(data)


def parse_json(raw: bytes | str) -> Any:
    """The JSON value in `raw`; a `malformed` answer when it is none (not JSON, not UTF-8, or nested so
    deep that the parser runs out of stack)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        start = raw[:60].decode("utf-8", "replace") if isinstance(raw, bytes) else raw[:60]
        raise BadAnswer("malformed", f"not JSON ({type(err).__name__}): {text(start)}") from None


async def lines(response: httpx.Response, limit: int = MAX_LINE_BYTES) -> AsyncIterator[str]:
    """The body's lines (ended by LF or CRLF), each at most `limit` bytes: httpx's own line reader keeps
    everything until a newline arrives, so a body without one would grow without bound."""
    _check_uncompressed(response)
    buffer = bytearray()
    async for piece in response.aiter_raw():
        buffer += piece
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            yield buffer[start:end].rstrip(b"\r").decode("utf-8", "replace")
            start = end + 1
        del buffer[:start]
        if len(buffer) > limit:
            raise BadAnswer("oversized", f"a line of more than {limit} bytes")
    if buffer:
        yield buffer.decode("utf-8", "replace")


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every discovery call: httpx builds one per client otherwise, ~50 ms each, and
    counting a prompt pool's tokens makes hundreds of calls."""
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    server: str  # the Server header, as a record-safe text
    value: Any  # the JSON body, or None when it is not JSON


def call(base_url: str, headers: dict[str, str], method: str, path: str, body: Any = None,
         deadline_s: float = DISCOVERY_DEADLINE_S) -> Reply:
    """One discovery call from synchronous code, its whole answer within `deadline_s`; a failure to get
    one is a :class:`BadAnswer` (`refused`, `timeout`, `cut`, `oversized`, `error`)."""
    try:
        return asyncio.run(asyncio.wait_for(_call(base_url, headers, method, path, body, deadline_s), deadline_s))
    except (TimeoutError, httpx.TimeoutException):
        raise BadAnswer("timeout", f"no whole answer within {deadline_s:g} s") from None
    except httpx.ConnectError as err:
        raise BadAnswer("refused", text(str(err) or type(err).__name__)) from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as err:
        raise BadAnswer("cut", text(str(err) or type(err).__name__)) from None
    except httpx.HTTPError as err:
        raise BadAnswer("error", text(f"{type(err).__name__}: {err}")) from None


async def _call(base_url: str, headers: dict[str, str], method: str, path: str, body: Any,
                deadline_s: float) -> Reply:
    async with httpx.AsyncClient(base_url=base_url, headers={**headers, **NO_COMPRESSION}, verify=_tls(),
                                 timeout=deadline_s) as client:
        async with client.stream(method, path, json=body) as response:
            ok = response.status_code == 200
            raw = await read_body(response, MAX_BODY_BYTES if ok else MAX_ERROR_BYTES, cut=not ok)
    try:
        value = parse_json(raw)
    except BadAnswer:
        value = None
    return Reply(response.status_code, response.headers.get("content-type", ""),
                 text(response.headers.get("server", ""), 80), value)
