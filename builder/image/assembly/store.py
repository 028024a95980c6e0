"""Assembled images on disk: content-addressed blobs plus named pointers, under the project's cache.

Blobs live at blobs/sha256/<hex> (the OCI image layout's scheme), each
written by rename and checked against its name on every read, so a damaged
file is a miss, never a wrong image. Safe to delete at any time.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temp name per thread: the per-arch workers may write the same blob at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(frozen=True)
class Store:
    root: Path

    def _blob(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "blobs" / "sha256" / hexpart

    def put(self, data: bytes) -> str:
        digest = digest_of(data)
        path = self._blob(digest)
        if not path.exists():
            _write(path, data)
        return digest

    def get(self, digest: str) -> bytes | None:
        try:
            data = self._blob(digest).read_bytes()
        except OSError:
            return None
        return data if digest_of(data) == digest else None

    def has(self, digest: str) -> bool:
        return self._blob(digest).is_file()

    def path(self, digest: str) -> Path:
        return self._blob(digest)

    def get_ref(self, kind: str, key: str) -> str | None:
        try:
            return (self.root / kind / key).read_text().strip() or None
        except OSError:
            return None

    def put_ref(self, kind: str, key: str, value: str) -> None:
        _write(self.root / kind / key, value.encode())
