"""A local stand-in for the Hugging Face Hub's file endpoints, with injectable faults.

It answers what ``huggingface_hub`` 2.4 asks for a file download:

* ``HEAD /{repo_id}/resolve/{revision}/{path}``: ``X-Repo-Commit``, ``ETag`` (and, for LFS
  files, ``X-Linked-Etag`` = the content's sha256 and ``X-Linked-Size``), ``Content-Length``.
  With ``redirect=True`` it answers 302 to a "CDN" URL on another host name (``localhost``
  instead of ``127.0.0.1``), as the real Hub does for LFS files; the client then takes the
  metadata from the 302 and downloads from the CDN URL.
* ``GET`` of the same URL (or of the CDN URL), honouring ``Range: bytes=N-`` with 206.
* ``GET /api/models/{repo_id}/revision/{revision}`` (``model_info``): the commit (``sha``) and,
  with ``?blobs=true``, each file's size and, for LFS files, its ``lfs.sha256``.
* Errors the way the Hub signals them: 404 with ``X-Error-Code`` ``RepoNotFound``,
  ``RevisionNotFound`` or ``EntryNotFound``.

Faults are planned per file, one action per GET (``plan``), then ``ok``:
``"ok"``, ``"corrupt"`` (same length, one byte flipped in the middle), ``"cut"`` or
``"cut:0.9"`` (that fraction of the body, default half, then the connection closes), or an
HTTP status such as ``"500"``. ``head_status`` makes
HEAD answer a status; ``hang`` makes every request wait until the server stops (timeouts).
Every request is logged in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def corrupted(data: bytes) -> bytes:
    """What a ``corrupt`` GET serves: one byte in the middle flipped."""
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True
    plan: list[str] = field(default_factory=list)
    head_status: int | None = None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def git_sha1(self) -> str:
        h = hashlib.sha1(b"blob %d\0" % len(self.data))
        h.update(self.data)
        return h.hexdigest()


@dataclass
class Request:
    method: str
    path: str
    range: str | None


class FakeHub:
    """Start with ``with FakeHub() as hub:`` or ``start()`` / ``stop()``; ``hub.url`` is the endpoint."""

    def __init__(self, *, redirect: bool = False) -> None:
        self.repos: dict[str, dict[str, HubFile]] = {}
        self.commits: dict[str, str] = {}
        self.requests: list[Request] = []
        self.redirect = redirect
        self.hang = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- setup

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_file(
        self, repo_id: str, path: str, data: bytes, *, lfs: bool = True, commit: str = COMMIT
    ) -> HubFile:
        self.commits.setdefault(repo_id, commit)
        f = HubFile(data=data, lfs=lfs)
        self.repos.setdefault(repo_id, {})[path] = f
        return f

    def file(self, repo_id: str, path: str) -> HubFile:
        return self.repos[repo_id][path]

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and path_contains in r.path
            )

    def model_info(self, url_path: str) -> bytes:
        """The model_info document (with ``blobs``) of the repo named in an /api/models/ path."""
        parts = unquote(url_path).lstrip("/").split("/")
        repo_id = f"{parts[2]}/{parts[3]}"
        siblings = []
        for path, f in self.repos[repo_id].items():
            sib: dict = {"rfilename": path, "size": len(f.data), "blobId": f.git_sha1}
            if f.lfs:
                sib["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}
            siblings.append(sib)
        doc = {"id": repo_id, "sha": self.commits[repo_id], "siblings": siblings}
        return json.dumps(doc).encode()

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling

    def _log(self, method: str, path: str, rng: str | None) -> None:
        with self._lock:
            self.requests.append(Request(method, path, rng))

    def _lookup(self, url_path: str) -> tuple[str, HubFile | None, dict[str, str], int]:
        """(kind, file, headers, status) for a /{repo}/resolve/{rev}/{path} or /cdn/{sha} path."""
        parts = unquote(url_path).lstrip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            # model_info: answer as the resolve URL of no file would, then with the repo's files.
            _, _, headers, status = self._lookup(f"/{parts[2]}/{parts[3]}/resolve/{parts[5]}/ ")
            return (
                "api",
                None,
                headers,
                200 if headers.get("X-Error-Code") == "EntryNotFound" else status,
            )
        if parts[0] == "cdn" and len(parts) == 2:
            for files in self.repos.values():
                for f in files.values():
                    if f.sha256 == parts[1]:
                        return "cdn", f, {}, 200
            return "cdn", None, {}, 404
        if len(parts) < 5 or parts[2] != "resolve":
            return "other", None, {"X-Error-Code": "RepoNotFound"}, 404
        repo_id, revision, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        if repo_id not in self.repos:
            return (
                "resolve",
                None,
                {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
                404,
            )
        commit = self.commits[repo_id]
        if revision not in ("main", commit):
            return (
                "resolve",
                None,
                {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"},
                404,
            )
        entry = self.repos[repo_id].get(path)
        if entry is None:
            headers = {
                "X-Error-Code": "EntryNotFound",
                "X-Error-Message": "Entry not found",
                "X-Repo-Commit": commit,
            }
            return "resolve", None, headers, 404
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.git_sha1}"'}
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(len(entry.data))
        return "resolve", entry, headers, 200


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # silence the default stderr log
            pass

        def _wait_if_hanging(self) -> bool:
            if hub.hang:
                hub._stop.wait(30)
                return True
            return False

        def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            hub._log("HEAD", path, None)
            if self._wait_if_hanging():
                return
            kind, f, headers, status = hub._lookup(path)
            if f is None:
                self._send(status, headers)
                return
            if f.head_status is not None:
                self._send(f.head_status, {"X-Repo-Commit": headers.get("X-Repo-Commit", COMMIT)})
                return
            if hub.redirect and kind == "resolve" and f.lfs:
                # Another host name: the client treats it as a CDN and keeps this response's metadata.
                headers["Location"] = f"http://localhost:{hub.port}/cdn/{f.sha256}"
                self._send(302, headers)
                return
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(f.data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            rng = self.headers.get("Range")
            hub._log("GET", path, rng)
            if self._wait_if_hanging():
                return
            kind, f, headers, status = hub._lookup(path)
            if kind == "api" and status == 200:
                self._send(200, {"Content-Type": "application/json"}, hub.model_info(path))
                return
            if f is None:
                self._send(status, headers, b"not found")
                return
            with hub._lock:
                action = f.plan.pop(0) if f.plan else "ok"
            if action.isdigit():
                self._send(int(action), {}, b"server error")
                return
            data = corrupted(f.data) if action == "corrupt" else f.data
            start = 0
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes=") : -1])
            body = memoryview(data)[start:]
            self.send_response(206 if start else 200)
            for k, v in headers.items():
                self.send_header(k, v)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if action.startswith("cut"):
                fraction = float(action.partition(":")[2] or 0.5)
                self.wfile.write(body[: int(len(body) * fraction)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler
