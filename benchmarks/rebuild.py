#!/usr/bin/env python3
"""Benchmark `--source rebuild` for nine arches, cold and warm; prints two tables.

Cold: an empty cache, so Debian's toolchain and dependency packages are
downloaded from the real mirror and checked through the chain (into a
test-signed archive: builder/testarchive.py), the toolchain is unpacked and
all nine arches are compiled from nothing. Warm: the same again with the
cache. Baseline, measured in the same run: a cold fetch of Debian's prebuilt
gosu packages (eight arches) from the same mirror. Goals (issue 16): warm
under 1 s, cold under 90 s.

The second table compares each binary's size with the prebuilt ones we
have here: Debian trixie's gosu 1.17 (Go 1.24, from gosu.lock.json) and,
for amd64, upstream's signed 1.14 in ../shared (upstream's 1.19 files cannot
be downloaded here).

    .venv/bin/python benchmarks/rebuild.py
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import config, testarchive  # noqa: E402
from builder.fetch import fetch  # noqa: E402
from tests.engine import project_config  # noqa: E402

GOSU_119_ORIG = "cd9719b775dbfedae53923c9b0dc792b66d42c51e0b36652ed6f747fbadc0164"
UPSTREAM_114_AMD64 = ROOT.parent / "shared" / "gosu-release" / "1.14" / "gosu-amd64"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    try:
        cfg = project_config()
        debian = config.fetch_options(cfg.gosu, source="debian", arch=cfg.gosu.debian.arches,
                                      cache_dir=str(tmp / "debian-cache"))
        base, t_base = timed(lambda: fetch(dataclasses.replace(debian, lock=None), log=io.StringIO()))
        assert base.ok, base.failures
        real = config.fetch_options(cfg.gosu, source="rebuild", arch="amd64", cache_dir=str(tmp / "cache"))
        made, t_inputs = timed(lambda: testarchive.make(tmp / "archive", real, "1.19-1", GOSU_119_ORIG, io.StringIO()))
        opts = config.fetch_options(project_config(made.config).gosu, source="rebuild", cache_dir=str(tmp / "cache"))
        cold, t_cold = timed(lambda: fetch(opts, log=io.StringIO()))
        assert cold.ok, [str(f) for f in cold.failures]
        warm, t_warm = timed(lambda: fetch(opts, log=io.StringIO()))
        assert warm.ok and all(f.from_cache for f in warm.fetched)
        rows = [("Debian's prebuilt gosu, 8 arches, cold (baseline)", t_base),
                ("rebuild inputs: download + chain checks (real mirror)", t_inputs),
                ("rebuild, cold: unpack Go + 9 compiles + checks", t_cold),
                ("rebuild, cold total", t_inputs + t_cold),
                ("rebuild, warm (9 arches, nothing compiled)", t_warm)]
        print(f"{'gosu 1.19, nine arches':56} {'seconds':>8} {'ratio':>7}")
        for label, t in rows:
            print(f"{label:56} {t:8.2f} {t / t_base:7.2f}")
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
