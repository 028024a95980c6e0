#!/usr/bin/env python3
"""Benchmark `--source rebuild` for nine arches, cold and warm; prints two tables.

Cold: an empty cache, so Debian's toolchain and dependency packages are
downloaded from the real mirror and checked through the chain (into a
test-signed archive: builder/gosu/testarchive.py), the toolchain is unpacked and
all nine arches are compiled from nothing. Warm: the same again with the
cache. Baseline, measured in the same run: a cold fetch of Debian's prebuilt
gosu packages (eight arches) from the same mirror. Goals (issue 16): warm
under 1 s, cold under 90 s.

With --accept-expired SUITE (e.g. unstable, when the mirror's copy of it has
expired), there is no test archive: the cold run takes everything straight
from the real mirror through the real chain with Debian's keys, accepting
that suite's expired Release (the result is a trial input), so "rebuild
inputs" and the compiles are one row.

The second table compares each binary's size with the prebuilt ones we
have here: Debian trixie's gosu 1.17 (Go 1.24, from gosu.lock.json) and,
for amd64, upstream's signed 1.14 in ../shared (upstream's 1.19 files cannot
be downloaded here).

    .venv/bin/python benchmarks/rebuild.py [--accept-expired unstable]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import wiring
from builder.gosu import testarchive  # noqa: E402
from builder.gosu.fetch import fetch  # noqa: E402
from benchmarks.common import project_config  # noqa: E402

GOSU_119_ORIG = "cd9719b775dbfedae53923c9b0dc792b66d42c51e0b36652ed6f747fbadc0164"
UPSTREAM_114_AMD64 = ROOT.parent / "shared" / "gosu-release" / "1.14" / "gosu-amd64"


def _cpu() -> float:
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def timed(fn, cpu: dict, label: str):
    """fn()'s result and wall seconds; its CPU seconds (this process and its children) go to cpu[label]."""
    c, start = _cpu(), time.perf_counter()
    out = fn()
    cpu[label] = _cpu() - c
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accept-expired", default="", help="build from the real mirror, accepting these suites' "
                    "expired Release (comma-separated), instead of from a test archive")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    try:
        cfg = project_config()
        debian = wiring.fetch_options(cfg.gosu, source="debian", arch=cfg.gosu.debian.arches,
                                      cache_dir=str(tmp / "debian-cache"))
        cpu: dict[str, float] = {}
        base, t_base = timed(lambda: fetch(dataclasses.replace(debian, lock=None), log=io.StringIO()), cpu, "base")
        assert base.ok, base.failures
        if args.accept_expired:
            opts = dataclasses.replace(wiring.fetch_options(cfg.gosu, source="rebuild", cache_dir=str(tmp / "cache"),
                                                            accept_expired=args.accept_expired), lock=None)
            t_inputs, cpu["inputs"] = 0.0, 0.0
        else:
            real = wiring.fetch_options(cfg.gosu, source="rebuild", arch="amd64", cache_dir=str(tmp / "cache"))
            made, t_inputs = timed(lambda: testarchive.make(tmp / "archive", real, "1.19-1", GOSU_119_ORIG,
                                                            io.StringIO()), cpu, "inputs")
            opts = wiring.fetch_options(project_config(made.config).gosu, source="rebuild",
                                        cache_dir=str(tmp / "cache"))
        cold, t_cold = timed(lambda: fetch(opts, log=io.StringIO()), cpu, "cold")
        assert cold.ok, [str(f) for f in cold.failures]
        warm, t_warm = timed(lambda: fetch(opts, log=io.StringIO()), cpu, "warm")
        assert warm.ok and all(f.from_cache for f in warm.fetched)
        for record in (tmp / "cache" / "verified").rglob("rebuild-*"):
            shutil.rmtree(record)   # outputs forgotten; inputs, toolchain and Go's build cache kept
        again, t_gocache = timed(lambda: fetch(opts, log=io.StringIO()), cpu, "gocache")
        assert again.ok and [f.sha256 for f in again.fetched] == [f.sha256 for f in cold.fetched]
        rows = [("Debian's prebuilt gosu, 8 arches, cold (baseline)", t_base, cpu["base"]),
                *([] if args.accept_expired else
                  [("rebuild inputs: download + chain checks (real mirror)", t_inputs, cpu["inputs"])]),
                (f"rebuild, cold: downloads + chain ({args.accept_expired} expired, accepted) + 9 compiles"
                 if args.accept_expired else "rebuild, cold: unpack Go + 9 compiles + checks", t_cold, cpu["cold"]),
                ("rebuild, cold total", t_inputs + t_cold, cpu["inputs"] + cpu["cold"]),
                ("rebuild, warm (9 arches, nothing compiled)", t_warm, cpu["warm"]),
                ("rebuild, outputs forgotten, Go build cache warm", t_gocache, cpu["gocache"])]
        print(f"gosu 1.19, nine arches; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
        width = max(len(label) for label, _, _ in rows)
        print(f"{'':{width}} {'seconds':>8} {'ratio':>7} {'CPU s':>7}")
        for label, t, c in rows:
            print(f"{label:{width}} {t:8.2f} {t / t_base:7.2f} {c:7.1f}")
        print(f"goals: warm < 1 s ({'met' if t_warm < 1 else 'MISSED'}), "
              f"cold < 90 s ({'met' if t_inputs + t_cold < 90 else 'MISSED'})\n")
        debian_sizes = {a: e["size"] for a, e in json.loads((ROOT / "gosu.lock.json").read_text())["debian"]
                        ["arches"].items()}
        print(f"{'arch':9} {'sha256':64} {'Go':9} {'bytes':>9} {'Debian 1.17':>12} {'ratio':>6} {'upstream':>9}")
        for f in cold.fetched:
            deb = debian_sizes.get(f.arch)
            up = UPSTREAM_114_AMD64.stat().st_size if f.arch == "amd64" and UPSTREAM_114_AMD64.exists() else None
            print(f"{f.arch:9} {f.sha256} {f.detail('go_version'):9} {f.size:9} {deb or '-':>12} "
                  f"{f'{f.size / deb:.2f}' if deb else '-':>6} {f'{up} (1.14)' if up else '-':>9}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
