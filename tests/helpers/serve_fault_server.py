"""A tiny OpenAI-compatible streaming server that misbehaves on purpose, for `bench serve`'s fault tests.

Run as `python -m tests.helpers.serve_fault_server PORT BEHAVIOUR[,BEHAVIOUR...] [--die-after N] [--models M]
[--name JSON] [--version V] [--tokenize T]`: request i (counted from 0, completions or chat) gets BEHAVIOUR
number i modulo their count:

* ok: 4 token chunks, a finish reason, usage, [DONE]
* 500: HTTP 500 with a JSON error
* cut: two token chunks, then the connection closes
* slow: one token chunk, then 30 s of silence
* a malformed chunk after the first token, then the rest of an ok answer: `data-null` (`data: null`),
  `data-5`, `data-list` (a JSON list), `choices-5` (`choices: [5]`), `usage-list` (`usage: [1]`),
  `usage-str` (counts as strings), `usage-negative` (-20050 output tokens), `usage-excess` (a million)
* html: a 200 answer of HTML, not an event stream
* endless-line: `data: ` and then bytes without a newline
* empty-deltas: token chunks with empty text, without end
* loris: the event stream's first byte, then one byte every 2 s
* echo: an error inside the stream that echoes the request's API key, as is and URL-encoded

`--models` shapes the `/v1/models` answer: ok (one model named by `--name`, a JSON value, "faulty" by
default, or `echo` for a name that holds the request's API key), html, list (a JSON list), loris (one byte
every 2 s). `--version` shapes `/version`: none (404), ok, bad (a JSON list), loris, echo (the API key).
`--tokenize` shapes `/tokenize`: none (404), ok (a token per word), bad (`tokens` not a list), loris, later
(counts for the first probe, then HTTP 500).

Every hostile answer is bounded: it ends when bench hangs up (the next write fails) or after ``BOUND_S``
seconds and ``BOUND_BYTES`` bytes, whichever comes first; with `--die-after N` the process exits (no
goodbye, like a crash) once N requests have arrived. Every request's path is appended to `requests.log`
in the working directory, so a test can check where traffic went.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

TOKENS = 4
BOUND_S = 60.0  # the longest any hostile answer goes on
BOUND_BYTES = 4 << 30  # the most an endless answer sends
LORIS_GAP_S = 2.0
MALFORMED = {"data-null": b"null", "data-5": b"5", "data-list": b"[1, 2]", "choices-5": b'{"choices": [5]}',
             "usage-list": b'{"choices": [], "usage": [1]}'}
BAD_USAGE = {"usage-str": {"prompt_tokens": "7", "completion_tokens": "4"},
             "usage-negative": {"prompt_tokens": 7, "completion_tokens": -20050},
             "usage-excess": {"prompt_tokens": 7, "completion_tokens": 10**6}}


class Handler(BaseHTTPRequestHandler):
    behaviours: list[str] = ["ok"]
    options = argparse.Namespace(die_after=None, models="ok", name='"faulty"', version="none", tokenize="none")
    count = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        """Quiet: the tests read the client's counts, not the server's access log."""

    def _key(self) -> str:
        return self.headers.get("authorization", "").removeprefix("Bearer ")

    def do_GET(self) -> None:
        self._log()
        if self.path == "/health":
            return self._json(200, {"ok": True})
        if self.path == "/v1/models":
            return self._models()
        if self.path == "/version" and self.options.version != "none":
            return self._shaped(self.options.version, {"version": "0.0-fault"}, {"version": self._key()})
        return self._json(404, {"error": "not found"})

    def _models(self) -> None:
        kind = self.options.models
        name = "served-" + self._key() if self.options.name == "echo" else json.loads(self.options.name)
        self._shaped(kind, {"object": "list", "data": [{"id": name, "object": "model"}]}, None)

    def _shaped(self, kind: str, good: object, echo: object) -> None:
        """A JSON answer of the asked shape: ok, echo, bad (a list), html, list, or loris."""
        if kind == "loris":
            return self._loris("application/json", b'{"object": "list", "data": []}')
        if kind == "html":
            return self._raw(200, "text/html", b"<html><body>not an API</body></html>")
        if kind in ("bad", "list"):
            return self._json(200, [1, 2])
        self._json(200, echo if kind == "echo" else good)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self._log()
        if self.path == "/tokenize" and self.options.tokenize != "none":
            return self._tokenize(json.loads(body)["prompt"])
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            return self._json(404, {"error": "not found"})
        with Handler.lock:
            number = Handler.count
            Handler.count += 1
        if self.options.die_after is not None and number >= self.options.die_after:
            os._exit(1)
        # bench hangs up on a hostile answer, as it should.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(Handler.behaviours[number % len(Handler.behaviours)], self.path.endswith("chat/completions"))

    def _tokenize(self, prompt: str) -> None:
        kind = self.options.tokenize
        if kind == "loris":
            return self._loris("application/json", b'{"tokens": [1]}')
        if kind == "bad":
            return self._json(200, {"tokens": "many"})
        if kind == "later" and prompt != "hello":
            return self._json(500, {"error": "tokenizer gone"})
        self._json(200, {"tokens": list(range(len(prompt.split())))})

    def _answer(self, behaviour: str, chat: bool) -> None:
        if behaviour == "500":
            return self._json(500, {"error": {"message": "injected failure"}})
        if behaviour == "html":
            return self._raw(200, "text/html", b"<html><body>" + b"busy " * 100 + b"</body></html>")
        if behaviour == "loris":
            return self._loris("text/event-stream", b"data: " + json.dumps(self._chunk(chat, "t", None)).encode())
        self._stream_headers()
        if behaviour == "endless-line":
            return self._endless(b"data: ", b"x" * 65536)
        if behaviour == "empty-deltas":
            return self._endless(b"", b"data: " + json.dumps(self._chunk(chat, "", None)).encode() + b"\n\n")
        chunks = {"cut": 2, "slow": 1}.get(behaviour, TOKENS)
        for i in range(chunks):
            self._event(self._chunk(chat, f"t{i}", None))
            time.sleep(0.005)
            if i == 0 and behaviour in MALFORMED:
                self._line(MALFORMED[behaviour])
            if i == 0 and behaviour == "echo":
                key = self._key()
                self._event({"error": {"message": f"invalid key {key}", "see": f"/keys?k={quote(key, safe='')}"}})
        if behaviour == "cut":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the stream stops mid-answer
            return
        if behaviour == "slow":
            time.sleep(30)
            return
        self._event(self._chunk(chat, "", "length"))
        usage = BAD_USAGE.get(behaviour, {"prompt_tokens": 7, "completion_tokens": TOKENS})
        self._event({"choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _endless(self, head: bytes, block: bytes) -> None:
        """`head`, then `block` again and again, until bench hangs up or the bounds are reached."""
        self.wfile.write(head)
        sent, until = len(head), time.monotonic() + BOUND_S
        while sent < BOUND_BYTES and time.monotonic() < until:
            self.wfile.write(block)
            sent += len(block)

    def _loris(self, content_type: str, payload: bytes) -> None:
        """A 200 answer whose body comes one byte every ``LORIS_GAP_S`` seconds (at most ``BOUND_S``)."""
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload) + 10**6))
        self.end_headers()
        until = time.monotonic() + BOUND_S
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # bench gave up at its deadline
            for byte in (payload + b" " * 10**6):
                if time.monotonic() > until:
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(LORIS_GAP_S)

    def _log(self) -> None:
        with open("requests.log", "a") as log:
            log.write(f"{self.path} {self.headers.get('host')}\n")

    def _stream_headers(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()

    @staticmethod
    def _chunk(chat: bool, text: str, finish: str | None) -> dict:
        choice = {"index": 0, "finish_reason": finish}
        choice.update({"delta": {"content": text}} if chat else {"text": text})
        return {"choices": [choice]}

    def _event(self, payload: dict) -> None:
        self._line(json.dumps(payload).encode())

    def _line(self, data: bytes) -> None:
        self.wfile.write(b"data: " + data + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, payload: object) -> None:
        self._raw(status, "application/json", json.dumps(payload).encode())

    def _raw(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def launch(behaviours: str, cwd: Path, die_after: int | None = None, **options: str) -> tuple[str, subprocess.Popen]:
    """Start the server in a child process on a free loopback port; (base URL, process) once it answers.
    `options` are the command's other flags (models, name, version, tokenize)."""
    import httpx

    from bench.serve.server import free_port

    port = free_port()
    args = [sys.executable, "-m", "tests.helpers.serve_fault_server", str(port), behaviours]
    if die_after is not None:
        args += ["--die-after", str(die_after)]
    for flag, value in options.items():
        args += [f"--{flag}", value]
    process = subprocess.Popen(args, cwd=cwd, env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return base, process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the fault server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("behaviours")
    parser.add_argument("--die-after", type=int)
    parser.add_argument("--models", default="ok", choices=["ok", "html", "list", "loris"])
    parser.add_argument("--name", default='"faulty"')
    parser.add_argument("--version", default="none", choices=["none", "ok", "bad", "loris", "echo"])
    parser.add_argument("--tokenize", default="none", choices=["none", "ok", "bad", "loris", "later"])
    options = parser.parse_args()
    Handler.behaviours, Handler.options = options.behaviours.split(","), options
    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
