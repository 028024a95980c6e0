#!/usr/bin/env python3
"""Benchmark `fetch` for nine arches from a loopback HTTP mirror, cold and warm; prints a table.

Baseline: a plain requests download of the same 18 files (no verification,
no cache), measured in the same interleaved rounds.

    .venv/bin/python benchmarks/fetch.py [--rounds 5] [--size 2300000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from builder.core import arches  # noqa: E402
from builder.gosu.fetch import FetchOptions, fetch  # noqa: E402
from tests.support.fakerelease import fake_elf, make_release  # noqa: E402
from tests.support.gpgkit import GpgTestKey  # noqa: E402
from tests.support.httpmirror import Mirror  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=2_300_000, help="bytes per binary (gosu is ~2.3 MB)")
    a = ap.parse_args()
    key = GpgTestKey.generate("Bench <bench@test.invalid>")
    tmp = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    try:
        pad = os.urandom(a.size)
        make_release(tmp / "m", "9.9", key, binaries={x.dpkg: fake_elf(x, pad) for x in arches.ARCHES})
        key_file = key.export(tmp / "k.asc")
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
                opts = FetchOptions("9.9", arches.ARCHES, mirror.url, key_file, key.fingerprint, tmp / f"c{r}", None)
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
        key.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
