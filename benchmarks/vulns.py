#!/usr/bin/env python3
"""Benchmark gosu's vulnerability scan: cold and warm per gosu, against assembling that gosu's image; VEX size.

Per gosu (each source and arch asked for): govulncheck cold (empty cache) and
warm (cached result), what it finds at each level (by version only, in
packages linked in, with a function present) and how many of the present
ones the reviewed assessments (vuln.assessments) clear, the label, and the
size of the VEX document an image gets; then the same gosu's alpine image
assembled cold (empty store) and warm, the build the scan is part of. Medians
over rounds.

    .venv/bin/python benchmarks/vulns.py --db DIR [--source debian] [--arch amd64,arm64] [--rounds 3]
        [--config .cache/test-archive/invoke.yaml]   # e.g. for --source rebuild
        [--binary PATH:VERSION:SOURCE]               # a gosu file as it is (e.g. ../shared/gosu-release's 1.14)

--db: vuln.go.dev, or a directory in its layout (default: vuln.db). Needs
`invoke up` (govulncheck, and the local registry's alpine base for the build
column).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import pipeline, wiring  # noqa: E402
from builder.gosu import fetch as fetch_stage  # noqa: E402
from builder.image.audit import goinfo, openvex, vulndb, vulns  # noqa: E402
from benchmarks.common import project_config  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=None)
    ap.add_argument("--source", default="debian")
    ap.add_argument("--arch", default="amd64,arm64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--config", default=None, help="an invoke runtime config (invoke -f)")
    ap.add_argument("--no-build", action="store_true", help="skip the build column (no registry needed)")
    ap.add_argument("--accept-expired", default=None, help="as the tasks' flag (a stale mirror's unstable)")
    ap.add_argument("--binary", default=None, help="PATH:VERSION:SOURCE of a gosu to scan instead of fetching")
    a = ap.parse_args()
    cfg = project_config(Path(a.config).resolve() if a.config else None)
    base = wiring.vuln_settings(wiring.settings(cfg), a.db)
    if base is None:
        sys.exit("give --db (vuln.db is empty)")
    modified = vulndb.modified(base.db, base.timeout, base.required)
    if modified is None:
        sys.exit(f"database {base.db} cannot be reached")
    print(f"database {base.db}, modified {modified}; govulncheck {base.scanner_version}; {a.rounds} round(s), "
          "medians")
    if a.binary:
        return scan_file(base, modified, *a.binary.rsplit(":", 2))
    opts = wiring.fetch_options(cfg.gosu, source=a.source, arch=a.arch,
                                **({"accept_expired": a.accept_expired} if a.accept_expired else {}))
    report = fetch_stage.fetch(opts, log=io.StringIO())
    if not report.ok:
        sys.exit("gosu could not be fetched; see `invoke fetch`")
    header = (f"{'source':8} {'arch':8} {'gosu':10} {'go':9} {'symbol':>6} {'assessed':>8} {'package':>7} "
              f"{'version':>7} "
              f"{'scan cold s':>11} {'scan warm s':>11} {'build cold s':>12} {'build warm s':>12} "
              f"{'cold/build':>10} {'VEX bytes':>9}  label")
    print(header)
    print("-" * len(header))
    for f in report.fetched:
        cold, warm, scan = [], [], None
        for _ in range(a.rounds):
            with tempfile.TemporaryDirectory() as cache:
                s = dataclasses.replace(base, cache_dir=Path(cache))
                t, scan = timed(lambda: vulns.review(vulns.scan(s, f.path, f.sha256, modified), s.assessments,
                                                     f.version, f.kind))
                cold.append(t)
                warm.append(timed(lambda: vulns.review(vulns.scan(s, f.path, f.sha256, modified), s.assessments,
                                                       f.version, f.kind))[0])
        doc = openvex.document(scan, "ghcr.io/org/base-gosu", "sha256:" + "0" * 64, f.arch, "github.com/tianon/gosu",
                               "", f.version, goinfo.parse(f.path.read_bytes(), "gosu").go_version, "base-gosu")
        build_cold = build_warm = float("nan")
        if not a.no_build and f.arch in ("amd64", "arm64"):
            build_cold, build_warm = build_times(cfg, a, f.arch)
        symbol = str(len(scan.applicable)) if scan.symbols else "-"
        assessed = str(len(scan.cleared)) if scan.symbols else "-"
        package = str(scan.count("package")) if scan.symbols else "-"
        go = goinfo.parse(f.path.read_bytes(), "gosu").go_version
        print(f"{a.source:8} {f.arch:8} {f.version:10} {go:9} "
              f"{symbol:>6} {assessed:>8} {package:>7} {scan.count('version'):>7} {statistics.median(cold):>11.3f} "
              f"{statistics.median(warm):>11.4f} {build_cold:>12.2f} {build_warm:>12.2f} "
              f"{statistics.median(cold) / build_cold if build_cold == build_cold else float('nan'):>10.2f} "
              f"{len(doc):>9}  {scan.label}")
        print(f"{'':17} present: {', '.join(v.id for v in scan.applicable) or 'none'}; "
              f"affected after review: {', '.join(v.id for v in scan.affected) or 'none'}")
    return 0


def scan_file(base: vulns.Settings, modified: str, path: str, version: str, source: str) -> int:
    """One gosu file scanned as it is (no fetch): what govulncheck makes of it, or why it cannot."""
    import hashlib
    data = Path(path).read_bytes()
    with tempfile.TemporaryDirectory() as cache:
        s = dataclasses.replace(base, cache_dir=Path(cache))
        try:
            t, scan = timed(lambda: vulns.scan(s, Path(path), hashlib.sha256(data).hexdigest(), modified))
        except vulns.VulnError as e:
            print(f"{source} {version} {path}: not scanned: {e}")
            return 0
    print(f"{source} {version} {path}: {scan.summary()} ({t:.3f} s cold)")
    return 0


def build_times(cfg, a, arch: str) -> tuple[float, float]:
    """Median seconds to assemble this gosu's alpine image with an empty store (cold) and again (warm)."""
    cold, warm = [], []
    for _ in range(a.rounds):
        with tempfile.TemporaryDirectory() as store:
            req = dataclasses.replace(wiring.build_request(
                wiring.settings(cfg), flavor="alpine", arch=arch, vuln_db="", source=a.source,
                **({"accept_expired": a.accept_expired} if a.accept_expired else {})), store=Path(store))
            run = pipeline.plan(req, io.StringIO())
            cold.append(timed(lambda: pipeline.assemble_images(req, run, io.StringIO()))[0])
            warm.append(timed(lambda: pipeline.assemble_images(req, run, io.StringIO()))[0])
    return statistics.median(cold), statistics.median(warm)


if __name__ == "__main__":
    raise SystemExit(main())
