"""A loopback HTTP server that answers the requests huggingface_hub makes, so the real client is tested
without the network: `HF_ENDPOINT=http://127.0.0.1:PORT`.

What it speaks is what huggingface_hub 2.x asks (read from its source): model info
(`GET /api/models/{repo}/revision/{rev}`), file metadata and content (`HEAD`/`GET
/{repo}/resolve/{rev}/{file}`, with `X-Repo-Commit`, `ETag`, `X-Linked-Size` and `Content-Length`), HTTP
`Range` reads (the safetensors header reads), and errors as the hub sends them: `X-Error-Code` RepoNotFound,
GatedRepo, RevisionNotFound and EntryNotFound. Every request is logged, so a test can show that no weight
bytes were downloaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class FakeRepo:
    commit: str
    files: dict[str, bytes]
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit; "main" is added
    gated_token: str | None = None  # a gated repository answers only this bearer token
    license: str = "apache-2.0"
    listed_sizes: dict[str, int] = field(default_factory=dict)  # sizes the listing claims instead of the real ones

    def resolve(self, revision: str) -> str | None:
        """A branch's commit, or a commit some branch points to (the files are the same at every commit)."""
        refs = {"main": self.commit, **self.branches}
        return revision if revision in refs.values() else refs.get(revision)


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: bool  # whether an Authorization header came (its value is never kept)


class HubServer:
    """`with HubServer(repos) as hub:` serves `repos` on 127.0.0.1 until the block ends."""

    def __init__(self, repos: dict[str, FakeRepo]):
        self.repos = repos
        self.requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bytes_sent(self, filename: str) -> list[str | None]:
        """The Range header of every GET of `filename` (None: the whole file)."""
        return [r.range for r in self.requests if r.method == "GET" and r.path.endswith("/" + filename)]


_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _handler(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            """Quiet: the tests read `hub.requests` instead of the server's log lines."""

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            path = urlsplit(self.path).path
            hub.requests.append(Request(self.command, path, self.headers.get("Range"),
                                        "Authorization" in self.headers))
            if (m := _INFO.match(path)) and self.command == "GET":
                return self._info(unquote(m["repo"]), unquote(m["rev"]))
            if (m := _TREE.match(path)) and self.command == "GET":
                return self._tree(unquote(m["repo"]), unquote(m["rev"]))
            if m := _RESOLVE.match(path):
                return self._file(unquote(m["repo"]), unquote(m["rev"]), unquote(m["file"]), body)
            self._error(404, "EntryNotFound", "no such route", body)

        def _repo(self, name: str, body: bool) -> FakeRepo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found", body)
                return None
            if repo.gated_token and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
                self._error(401, "GatedRepo", "Access to model is restricted", body)
                return None
            return repo

        def _at(self, name: str, revision: str, body: bool) -> tuple[FakeRepo, str] | None:
            """The repository and the commit `revision` names, or None once the Hub's error is sent."""
            repo = self._repo(name, body)
            if repo is None:
                return None
            commit = repo.resolve(revision)
            if commit is None:
                self._error(404, "RevisionNotFound", "Invalid rev id", body)
                return None
            return repo, commit

        def _info(self, name: str, revision: str) -> None:
            found = self._at(name, revision, True)
            if found is None:
                return
            repo, commit = found
            payload = {"id": name, "modelId": name, "sha": commit, "private": False,
                       "gated": "auto" if repo.gated_token else False, "cardData": {"license": repo.license},
                       "siblings": [{"rfilename": f} for f in sorted(repo.files)]}
            self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"}, True)

        def _tree(self, name: str, revision: str) -> None:
            """The repository's files (`list_repo_files`), one page: no `Link` header means no next page."""
            found = self._at(name, revision, True)
            if found is None:
                return
            repo, _ = found
            entries = [{"type": "file", "path": f, "size": repo.listed_sizes.get(f, len(data)),
                        "oid": hashlib.sha1(data).hexdigest()} for f, data in sorted(repo.files.items())]
            self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, True)

        def _file(self, name: str, revision: str, filename: str, body: bool) -> None:
            found = self._at(name, revision, body)
            if found is None:
                return
            repo, commit = found
            if filename not in repo.files:
                return self._error(404, "EntryNotFound", "Entry not found", body, {"X-Repo-Commit": commit})
            data = repo.files[filename]
            etag = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
            if filename.endswith(".safetensors"):
                headers.update({"X-Linked-Size": str(len(data)), "X-Linked-Etag": f'"{etag}"'})
            wanted = self.headers.get("Range")
            if wanted and (m := _RANGE.match(wanted)):
                start = int(m[1])
                end = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(206, data[start:end + 1], headers, body)
            self._send(200, data, headers, body)

        def _error(self, status: int, code: str, message: str, body: bool, extra: dict | None = None) -> None:
            payload = json.dumps({"error": message}).encode()
            self._send(status, payload, {"X-Error-Code": code, "X-Error-Message": message,
                                         "Content-Type": "application/json", **(extra or {})}, body)

        def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
