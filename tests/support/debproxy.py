"""A loopback HTTP proxy of Debian's mirror that answers 404 for chosen pool files: a mirror caught mid-sync."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class PartialMirror:
    def __init__(self, upstream: str, missing: tuple[str, ...]):
        self.upstream = upstream.rstrip("/")
        # A pool path whose file name starts with one of these is answered 404.
        self.missing = missing
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/debian"

    def __enter__(self) -> "PartialMirror":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(mirror: PartialMirror):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.removeprefix("/debian")
            if "/pool/" in path and path.rsplit("/", 1)[-1].startswith(mirror.missing):
                with mirror._lock:
                    mirror.refused.append(path)
                self.send_error(404)
                return
            resp = requests.get(mirror.upstream + path, timeout=60)
            self.send_response(resp.status_code)
            self.send_header("Content-Length", str(len(resp.content)))
            self.send_header("Content-Type", resp.headers.get("Content-Type", "application/octet-stream"))
            self.end_headers()
            self.wfile.write(resp.content)

        def log_message(self, *args):
            pass

    return Handler
