"""Getting release files: from GitHub, an HTTP mirror or a local directory, into a cache.

Downloads land in a private staging directory and reach the cache only after
the caller has verified them. The cache is content-addressed (sha256), every
write is temp-file + rename, so two concurrent runs never see a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from builder.core.errors import BuilderError



class DownloadError(BuilderError):
    def __init__(self, file: str, reason: str, detail: str):
        super().__init__(f"{file}: {reason}: {detail}")
        self.file, self.reason, self.detail = file, reason, detail


@dataclass(frozen=True)
class Source:
    """Where releases live, laid out as <base>/<version>/<file>."""

    base: str

    @property
    def is_local(self) -> bool:
        return urlparse(self.base).scheme in ("", "file")

    @property
    def local_root(self) -> Path:
        return Path(urlparse(self.base).path if self.base.startswith("file:") else self.base)

    def location(self, *parts: str) -> str:
        if self.is_local:
            return str(self.local_root.joinpath(*parts))
        return "/".join([self.base.rstrip("/"), *parts])


def make_session(retries: int, backoff: float) -> requests.Session:
    """Retry connection errors and 5xx with exponential backoff; a 404 is an answer."""
    retry = Retry(
        total=retries, connect=retries, read=retries, status=retries, other=0,
        backoff_factor=backoff, status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}), raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "base-gosu-builder"
    return session


class Progress:
    """One updating line on a terminal; one quiet line per file elsewhere (CI logs)."""

    def __init__(self, total_files: int, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total, self.done, self.bytes = total_files, 0, 0
        self._lock = threading.Lock()
        self._last = 0.0

    def advance(self, n: int) -> None:
        with self._lock:
            self.bytes += n
            now = time.monotonic()
            if self.tty and now - self._last > 0.1:
                self._last = now
                self._draw()

    def finished(self, name: str, size: int) -> None:
        with self._lock:
            self.done += 1
            if self.tty:
                self._draw()
                if self.done == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(f"fetched {name} ({size} bytes)\n")
            self.stream.flush()

    def _draw(self) -> None:
        self.stream.write(f"\rfetching gosu: {self.done}/{self.total} files, {self.bytes / 1048576:.1f} MiB ")
        self.stream.flush()


def download(session: requests.Session, source: Source, version: str, name: str, dest: Path,
             timeout: float, optional: bool = False, progress: Progress | None = None) -> Path | None:
    """Copy <source>/<version>/<name> to dest. With optional=True, a missing file returns None."""
    return get_file(session, source, source.location(version, name), name, dest, timeout, optional, progress)


NO_NETWORK_HINT = ("; no network? pass --mirror URL_OR_DIR (an HTTP mirror or a local directory), or "
                   "--source debian (Debian's archive, which many closed networks mirror)")


def get_file(session: requests.Session, source: Source, where: str, name: str, dest: Path, timeout: float,
             optional: bool = False, progress: Progress | None = None, hint: str = NO_NETWORK_HINT) -> Path | None:
    """Copy one file (a URL, or a path when the source is a directory) to dest; 404 is None if optional."""
    if source.is_local:
        src = Path(where)
        if not src.is_file():
            if optional:
                return None
            raise DownloadError(name, "missing", f"{where} does not exist in the mirror directory")
        shutil.copyfile(src, dest)
        if progress:
            progress.advance(dest.stat().st_size)
        return dest
    try:
        with session.get(where, stream=True, timeout=timeout) as resp:
            if resp.status_code == 404 and optional:
                return None
            if resp.status_code != 200:
                raise DownloadError(name, f"HTTP {resp.status_code}", f"GET {where} answered {resp.status_code} {resp.reason}")
            with open(dest, "wb") as f:
                for chunk in resp.iter_content(1 << 16):
                    f.write(chunk)
                    if progress:
                        progress.advance(len(chunk))
    except requests.RequestException as e:
        raise DownloadError(name, "connection failed", f"GET {where}: {_short(e)}{hint}") from None
    return dest


def _short(e: Exception) -> str:
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                   "timed out", "Max retries exceeded", "Network is unreachable"):
        if marker in text:
            return marker
    return text[:200]


@dataclass(frozen=True)
class CacheRecord:
    """What was verified: the binary and its signature, both by content address."""

    sha256: str
    size: int
    signature_sha256: str
    sums_checked: bool
    source: str


@dataclass(frozen=True)
class Cache:
    root: Path

    def blob(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256

    def record_path(self, fingerprint: str, version: str, arch: str) -> Path:
        # Keyed by the trusting fingerprint(s): a record verified with a test key
        # must never satisfy a lookup made with the production key.
        return self.root / "verified" / _safe(fingerprint) / version / f"{arch}.json"

    def staging(self) -> Path:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root / "tmp"))

    def read(self, fingerprint: str, version: str, arch: str, kind=None):
        """The record, as `kind` (CacheRecord by default), or None when absent or unreadable."""
        try:
            return (kind or CacheRecord)(**json.loads(self.record_path(fingerprint, version, arch).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def store_blob(self, src: Path, sha256: str) -> Path:
        dest = self.blob(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return dest

    def write(self, fingerprint: str, version: str, arch: str, record) -> None:
        path = self.record_path(fingerprint, version, arch)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(record.__dict__, f)
        os.replace(tmp, path)

    def evict(self, fingerprint: str, version: str, arch: str, record) -> None:
        for p in (self.record_path(fingerprint, version, arch), self.blob(record.sha256)):
            p.unlink(missing_ok=True)


def _safe(key: str) -> str:
    """Several fingerprints make one directory name that stays short."""
    if "," not in key:
        return key
    return "set-" + hashlib.sha256(key.encode()).hexdigest()[:32]
