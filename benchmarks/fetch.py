#!/usr/bin/env python3
"""Benchmark `fetch` for nine arches from a loopback HTTP mirror, cold and warm; prints a table.

Baseline: a plain requests download of the same 18 files (no verification,
no cache), measured in the same interleaved rounds.

    .venv/bin/python benchmarks/fetch.py [--rounds 5] [--size 2300000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from builder.core import arches  # noqa: E402
from builder.gosu.fetch import FetchOptions, fetch  # noqa: E402
from builder.gosu.testmirror import gpg, throwaway_key  # noqa: E402


def fake_elf(arch: arches.Arch, payload: bytes) -> bytes:
    """An ELF header of the arch's class, byte order and machine (what fetch checks), then the payload."""
    order = "<" if arch.elf_data == 1 else ">"
    ident = b"\x7fELF" + bytes([arch.elf_class, arch.elf_data, 1]) + b"\0" * 9
    header = ident + struct.pack(order + "HHI", 2, arch.elf_machine, 1)
    return header + b"\0" * (64 - len(header)) + payload + os.urandom(4096)


def make_release(d: Path, gnupg: Path, binaries: dict[str, bytes]) -> None:
    """Lay out tianon's release: d/gosu-ARCH and its .asc per arch, and a signed SHA256SUMS."""
    d.mkdir(parents=True)
    sums = []
    for name, data in sorted(binaries.items()):
        f = d / f"gosu-{name}"
        f.write_bytes(data)
        gpg(gnupg, "--armor", "--output", f"{f}.asc", "--detach-sign", str(f))
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {f.name}\n")
    (d / "SHA256SUMS").write_text("".join(sums))
    gpg(gnupg, "--armor", "--output", str(d / "SHA256SUMS.asc"), "--detach-sign", str(d / "SHA256SUMS"))


class Mirror:
    """An HTTP server on 127.0.0.1 serving a directory, recording the paths it was asked for."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        requests_seen = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                requests_seen.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=2_300_000, help="bytes per binary (gosu is ~2.3 MB)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    gnupg = tmp / "gnupg"
    try:
        fingerprint = throwaway_key(gnupg)
        pad = os.urandom(a.size)
        make_release(tmp / "m" / "9.9", gnupg, {x.dpkg: fake_elf(x, pad) for x in arches.ARCHES})
        key_file = tmp / "k.asc"
        key_file.write_text(gpg(gnupg, "--armor", "--export", fingerprint))
        times: dict[str, list[float]] = {"plain download of 18 files (baseline)": [], "fetch, cold cache": [],
                                         "fetch, warm cache": []}
        with Mirror(tmp / "m") as mirror:
            for r in range(a.rounds):
                start = time.perf_counter()
                with requests.Session() as s:
                    for x in arches.ARCHES:
                        for suffix in ("", ".asc"):
                            s.get(f"{mirror.url}/9.9/gosu-{x.dpkg}{suffix}").content
                times["plain download of 18 files (baseline)"].append(time.perf_counter() - start)
                opts = FetchOptions("9.9", arches.ARCHES, mirror.url, key_file, fingerprint, tmp / f"c{r}", None)
                for label in ("fetch, cold cache", "fetch, warm cache"):
                    mirror.requests.clear()
                    start = time.perf_counter()
                    report = fetch(opts, log=open(os.devnull, "w"))
                    times[label].append(time.perf_counter() - start)
                    assert report.ok, report.failures
                    if label.endswith("warm cache"):
                        assert mirror.binary_requests() == [], "warm run made HTTP requests"
        base = statistics.median(times["plain download of 18 files (baseline)"])
        print(f"{'nine arches, loopback mirror (median of %d rounds)' % a.rounds:52} {'seconds':>8} {'ratio':>7}")
        for k, v in times.items():
            print(f"{k:52} {statistics.median(v):8.3f} {statistics.median(v) / base:7.2f}")
        print("warm runs made 0 HTTP requests for binaries")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
