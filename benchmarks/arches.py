#!/usr/bin/env python3
"""Build and smoke time per arch, every arch of each flavor, against the host's own arch; prints a table.

Per (flavor, arch): assembly into an empty store (base read from the
registry, layer computed; no emulator), the engine load, and the whole smoke
suite (every check, under qemu for foreign arches). The baseline is the same
flavor on this machine's arch, measured in the same run, so the ratio is what
an arch costs over a native one. gosu comes from Debian's archive (every arch).

    .venv/bin/python benchmarks/arches.py [--flavor alpine,ubuntu] [--arch all]

Needs `invoke up`; bases the local registry lacks are seeded first (not timed).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import config, pipeline, wiring
from builder.core import emulation
from builder.image import make
from builder.image.assembly.store import Store
from builder.local import seed
from builder.smoke import suite as smoke  # noqa: E402
from builder.core.engine import Engine  # noqa: E402
from benchmarks.common import project_config  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(engine: Engine, req, plan, gosu) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = Store(Path(tmp))
        built, assemble = timed(lambda: make.build(store, plan, gosu, req.entrypoint))
        _, load = timed(lambda: make.load(engine, [built]))
        checks = smoke.checks_for(engine)
        failures, seconds = timed(lambda: smoke.run_all(
            engine, pipeline.subject_of(built, by_id=True), io.StringIO(), checks))
        if failures:
            raise SystemExit(f"{plan.name}: {len(failures)} smoke check(s) failed: {failures[0]}")
        return assemble, load, seconds, len(checks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavor", default="alpine,ubuntu,minideb")
    ap.add_argument("--arch", default="all")
    args = ap.parse_args()
    cfg = project_config()
    engine = Engine()
    req = wiring.build_request(wiring.settings(cfg), flavor=args.flavor, arch=args.arch, source="debian")
    setup = io.StringIO()
    seed.ensure_bases(config.local_settings(cfg.local), req.settings, req.targets, setup)
    run = pipeline.plan(req, setup)
    emulation.ensure([t.arch.dpkg for t in req.targets], setup, "benchmark")
    native = emulation.native_arch()
    rows = {}
    for p in run.images:
        rows[p.name] = measure(engine, req, p, run.gosu[p.gosu.arch])
    print(f"{'flavor':8} {'arch':8} {'platform':15} {'how':8} {'assemble s':>10} {'load s':>7} "
          f"{'smoke s':>8} {'checks':>6} {'smoke vs native':>15}")
    for t in req.targets:
        a, l, s, n = rows[t.name]
        base = rows.get(f"{t.flavor.name}-{native}")
        how = "qemu" if emulation.foreign([t.arch.dpkg]) else "native"
        ratio = f"{s / base[2]:.2f}x" if base else "n/a"
        print(f"{t.flavor.name:8} {t.arch.dpkg:8} {str(t.platform):15} {how:8} {a:10.2f} {l:7.2f} {s:8.1f} "
              f"{n:6} {ratio:>15}")


if __name__ == "__main__":
    main()
