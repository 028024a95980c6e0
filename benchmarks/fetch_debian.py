#!/usr/bin/env python3
"""Benchmark `fetch --source debian` for the eight arches Debian's trixie builds gosu for; prints a table.

Against Debian's real mirror (the one network these machines reach). The
baseline is a plain requests download of the same files the chain needs
(InRelease, eight Packages.xz, eight .debs: no verification, no cache),
measured in the same interleaved rounds.

    .venv/bin/python benchmarks/fetch_debian.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from invoke import Config  # noqa: E402

from builder import wiring
from builder.gosu import lock as lockfile  # noqa: E402
from builder.gosu.fetch import fetch  # noqa: E402

BASELINE = "plain download of the 17 files (baseline)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    cfg = Config(project_location=str(ROOT))
    cfg.load_project()
    opts = wiring.fetch_options(cfg.gosu, source="debian", arch=cfg.gosu.debian.arches)
    locked = lockfile.load(ROOT / cfg.gosu.lock_file).debian
    files = [f"dists/{opts.suite}/InRelease"] + \
        [f"dists/{opts.suite}/main/binary-{x.dpkg}/Packages.xz" for x in opts.arches] + \
        [e.source.split("/debian/", 1)[1] for e in locked.arches.values()]
    times: dict[str, list[float]] = {BASELINE: [], "fetch, cold cache": [], "fetch, warm cache": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-debian-"))
    try:
        for r in range(a.rounds):
            start = time.perf_counter()
            with requests.Session() as s:
                for f in files:
                    s.get(f"{opts.mirror}/{f}").content
            times[BASELINE].append(time.perf_counter() - start)
            run = dataclasses.replace(opts, cache_dir=tmp / f"c{r}")
            for label in ("fetch, cold cache", "fetch, warm cache"):
                start = time.perf_counter()
                report = fetch(run, log=open(os.devnull, "w"))
                times[label].append(time.perf_counter() - start)
                assert report.ok, report.failures
                assert all(f.from_cache for f in report.fetched) == label.endswith("warm cache")
        base = statistics.median(times[BASELINE])
        print(f"{'eight arches, %s (median of %d rounds)' % (opts.mirror, a.rounds):60} {'seconds':>8} {'ratio':>7}")
        for k, v in times.items():
            print(f"{k:60} {statistics.median(v):8.3f} {statistics.median(v) / base:7.2f}")
        print("warm runs made no HTTP request (every link re-checked from the cache)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
