"""A real HTTP server on 127.0.0.1 serving a release directory, with fault injection."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Mirror:
    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        # path -> status codes to answer before serving the file normally
        self.faults: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        handler = partial(_Handler, self, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def binary_requests(self) -> list[str]:
        return [p for p in self.requests if "/gosu-" in p]

    def __enter__(self) -> "Mirror":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, mirror: Mirror, *args, **kwargs):
        self.mirror = mirror
        super().__init__(*args, **kwargs)

    def do_GET(self):
        with self.mirror._lock:
            self.mirror.requests.append(self.path)
            pending = self.mirror.faults.get(self.path)
            status = pending.pop(0) if pending else None
        if status:
            self.send_error(status)
            return
        super().do_GET()

    def log_message(self, *args):
        pass
