"""Real registries for publish tests: Debian's docker-registry with htpasswd, and a fault proxy.

The proxy sits on loopback between the client and a real registry, forwards
every request, records it, and can answer a chosen request with a 5xx or a
TCP reset: the transient failures a remote registry has.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import bcrypt
import requests

from builder.local import setup as local
from builder.core.engine import Engine
from builder.core.registry import Registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AuthRegistry:
    """docker-registry on 127.0.0.1:<free port> with basic auth; stop() and start() keep its data."""

    def __init__(self, root: Path, user: str = "publisher", password: str = "correct-horse-9"):
        self.root, self.user, self.password = root, user, password
        self.host = f"127.0.0.1:{free_port()}"
        root.mkdir(parents=True, exist_ok=True)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        (root / "htpasswd").write_text(f"{user}:{hashed}\n")
        self.pid = 0
        self.start()

    def start(self) -> None:
        self.pid = local.start_registry(self.root, self.host, self.root / "htpasswd")

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        for _ in range(100):
            if not local.registry_answers(self.host):
                return
            time.sleep(0.1)
        raise RuntimeError(f"registry {self.host} did not stop")

    def client(self, password: str | None = None, host: str | None = None, **kw) -> Registry:
        kw = {"retries": 2, "backoff": 0.05, **kw}
        return Registry(host or self.host, (self.user, self.password if password is None else password), **kw)

    def logged_in_engine(self, config_dir: Path) -> Engine:
        """An engine client whose config.json holds this registry's login (as `docker login` leaves it)."""
        engine = Engine(env={"DOCKER_CONFIG": str(config_dir)})
        engine.run("login", self.host, "--username", self.user, "--password-stdin", input=self.password)
        return engine


@dataclass
class Fault:
    method: str
    path: str            # regex on the request path
    answer: int | str    # HTTP status, or "reset"
    times: int = 1


@dataclass
class Proxy:
    """`bearer=(user, password)` makes it a token-auth registry front, as Docker Hub and GHCR are:
    /v2 answers 401 with a Bearer challenge, and /token trades basic credentials for a
    token scoped to one repository and its actions."""
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, str, int | str]] = field(default_factory=list)
    bearer: tuple[str, str] | None = None
    tokens_issued: int = 0
    # A registry with the OCI 1.1 referrers API in front of one without it (docker-registry 2.8): a manifest
    # with a `subject` is answered with OCI-Subject and listed at /v2/<repo>/referrers/<digest>.
    referrers_api: bool = False
    referrers: dict[str, list[dict]] = field(default_factory=dict)
    # (method, path regex, seconds): requests held back that long before they are forwarded, so that two
    # clients' steps overlap as they would over a slow network.
    slow: list[tuple[str, str, float]] = field(default_factory=list)
    # (path, body) -> body: what a GET's answer is changed into on its way back (a registry, or something
    # between, that alters content); the headers, the digest header included, are passed on as they came.
    tamper: object = None

    def __post_init__(self):
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fault_for(self, method: str, path: str) -> int | str | None:
        with self._lock:
            for f in self.faults:
                if f.times and f.method == method and re.search(f.path, path):
                    f.times -= 1
                    return f.answer
        return None

    def writes(self) -> list[tuple[str, str, int | str]]:
        return [r for r in self.requests if r[0] not in ("GET", "HEAD")]


def _handler(proxy: Proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _token(self):
            want = "Basic " + base64.b64encode(":".join(proxy.bearer).encode()).decode()
            if self.headers.get("Authorization") != want:
                return self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            scope = parse_qs(urlsplit(self.path).query).get("scope", [""])[0]
            proxy.tokens_issued += 1
            token = base64.urlsafe_b64encode(scope.encode()).decode()
            return self._reply(200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"})

        def _allowed(self) -> bool:
            """The bearer token's scope must name this repository, with push for writes."""
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                return False
            scope = base64.urlsafe_b64decode(auth[7:].encode()).decode()
            _, repo, actions = scope.split(":") if scope.count(":") == 2 else ("", "", "")
            path = urlsplit(self.path).path
            need = "pull" if self.command in ("GET", "HEAD") else "push"
            return path.startswith(f"/v2/{repo}/") and need in actions.split(",")

        def _forward(self):
            if proxy.bearer and self.path.startswith("/token"):
                return self._token()
            if proxy.bearer and not self._allowed():
                m = re.match(r"/v2/(.+?)/(?:blobs|manifests)/", self.path)
                scope = f',scope="repository:{m.group(1)}:pull,push"' if m else ""
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {
                    "WWW-Authenticate": f'Bearer realm="http://{proxy.host}/token",service="test-registry"{scope}'})
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            listed = re.match(r"/v2/(.+)/referrers/(sha256:[0-9a-f]{64})", urlsplit(self.path).path)
            if proxy.referrers_api and listed and self.command == "GET":
                proxy.requests.append((self.command, self.path, "referrers API"))
                return self._referrers(listed.group(2))
            for method, pattern, seconds in proxy.slow:
                if method == self.command and re.search(pattern, self.path):
                    time.sleep(seconds)
            fault = proxy.fault_for(self.command, self.path)
            proxy.requests.append((self.command, self.path, fault or "forwarded"))
            if fault == "reset":
                # SO_LINGER 0: close() sends a RST, as a dropped connection does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            if isinstance(fault, int):
                self.send_response(fault)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            drop = ("connection", "content-length", "authorization") if proxy.bearer else ("connection", "content-length")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
            try:
                resp = requests.request(self.command, f"http://{proxy.upstream}{self.path}", data=body,
                                        headers=headers, allow_redirects=False, timeout=60)
            except requests.RequestException:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            self.send_response(resp.status_code)
            if proxy.referrers_api and self.command == "PUT" and "/manifests/" in self.path and \
                    resp.status_code == 201 and body:
                self._record_subject(body, resp.headers.get("Docker-Content-Digest", ""))
            for k, v in resp.headers.items():
                if k.lower() not in ("connection", "content-length", "transfer-encoding", "content-encoding"):
                    self.send_header(k, v)
            content = proxy.tamper(self.path, resp.content) if proxy.tamper and self.command == "GET" and \
                resp.status_code == 200 else resp.content
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)

        def _record_subject(self, body: bytes, digest: str):
            doc = json.loads(body)
            if "subject" not in doc:
                return
            desc = {"mediaType": doc.get("mediaType", ""), "digest": digest, "size": len(body),
                    "artifactType": doc.get("artifactType") or doc.get("config", {}).get("mediaType", "")}
            if doc.get("annotations"):
                desc["annotations"] = doc["annotations"]
            with proxy._lock:
                listed = proxy.referrers.setdefault(doc["subject"]["digest"], [])
                if all(d["digest"] != digest for d in listed):
                    listed.append(desc)
            self.send_header("OCI-Subject", doc["subject"]["digest"])

        def _referrers(self, digest: str):
            wanted = parse_qs(urlsplit(self.path).query).get("artifactType", [""])[0]
            found = [d for d in proxy.referrers.get(digest, []) if not wanted or d["artifactType"] == wanted]
            index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": found}
            headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
            if wanted:
                headers["OCI-Filters-Applied"] = "artifactType"
            return self._reply(200, json.dumps(index).encode(), headers)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    return Handler


def one_letter_changed(path: str, body: bytes) -> bytes:
    """The first all-lowercase JSON string value with a letter other than 'x' gets one letter changed: still
    valid JSON of the same length, other bytes."""
    m = re.search(rb'": ?"([a-z]+)"', body)
    if not m:
        return body
    i = m.start(1)
    return body[:i] + (b"x" if body[i:i + 1] != b"x" else b"y") + body[i + 1:]


def space_after_brace(path: str, body: bytes) -> bytes:
    """The same JSON with one space after its opening brace: equal as data, other bytes."""
    return body.replace(b"{", b"{ ", 1) if body.startswith(b"{") else body
