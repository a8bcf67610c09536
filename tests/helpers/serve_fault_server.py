"""A tiny OpenAI-compatible streaming server that misbehaves on purpose, for `bench serve`'s fault tests.

Run as `python -m tests.helpers.serve_fault_server PORT BEHAVIOUR[,BEHAVIOUR...] [DIE_AFTER]`: request i
(counted from 0, completions or chat) gets BEHAVIOUR number i modulo their count:

* ok: 4 token chunks, a finish reason, usage, [DONE]
* 500: HTTP 500 with a JSON error
* cut: two token chunks, then the connection closes
* slow: one token chunk, then 30 s of silence

With DIE_AFTER, the process exits (no goodbye, like a crash) once that many requests have
arrived. Every request's path is appended to `requests.log` in the working directory, so a
test can check where traffic went.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

TOKENS = 4


class Handler(BaseHTTPRequestHandler):
    behaviours: list[str] = ["ok"]
    die_after: int | None = None
    count = 0
    lock = threading.Lock()

    def log_message(self, *args) -> None:
        """Quiet: the tests read the client's counts, not the server's access log."""

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "faulty", "object": "model"}]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))  # the request body, unused
        with open("requests.log", "a") as log:
            log.write(f"{self.path} {self.headers.get('host')}\n")
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            return self._json(404, {"error": "not found"})
        with Handler.lock:
            number = Handler.count
            Handler.count += 1
        if Handler.die_after is not None and number >= Handler.die_after:
            os._exit(1)
        behaviour = Handler.behaviours[number % len(Handler.behaviours)]
        if behaviour == "500":
            return self._json(500, {"error": {"message": "injected failure"}})
        chat = self.path.endswith("chat/completions")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        chunks = {"ok": TOKENS, "cut": 2, "slow": 1}[behaviour]
        for i in range(chunks):
            self._event(self._chunk(chat, f"t{i}", None))
            time.sleep(0.005)
        if behaviour == "cut":
            self.wfile.flush()
            self.connection.shutdown(2)  # the stream stops mid-answer
            return
        if behaviour == "slow":
            time.sleep(30)
            return
        self._event(self._chunk(chat, "", "length"))
        self._event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": TOKENS,
                                              "total_tokens": 7 + TOKENS}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    @staticmethod
    def _chunk(chat: bool, text: str, finish: str | None) -> dict:
        choice = {"index": 0, "finish_reason": finish}
        choice.update({"delta": {"content": text}} if chat else {"text": text})
        return {"choices": [choice]}

    def _event(self, payload: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def launch(behaviours: str, cwd: Path, die_after: int | None = None) -> tuple[str, subprocess.Popen]:
    """Start the server in a child process on a free loopback port; (base URL, process) once it answers."""
    from bench.serve.server import free_port

    port = free_port()
    args = [sys.executable, "-m", "tests.helpers.serve_fault_server", str(port), behaviours]
    if die_after is not None:
        args.append(str(die_after))
    process = subprocess.Popen(args, cwd=cwd, env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/v1/models", timeout=1).status_code == 200:
                return base, process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the fault server did not start")


def main() -> None:
    port, behaviours = int(sys.argv[1]), sys.argv[2].split(",")
    Handler.behaviours = behaviours
    Handler.die_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
