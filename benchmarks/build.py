#!/usr/bin/env python3
"""Benchmark image builds per flavor/arch, cold (--no-cache) and warm; prints a table.

Baseline: `FROM <the same base digest>` + `RUN true`, built --no-cache in the
same interleaved rounds, i.e. what the engine costs before our layers.

    .venv/bin/python benchmarks/build.py [--rounds 3] [--arch amd64,arm64]

Needs `invoke up` and `invoke test-mirror`.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import config, images, pipeline  # noqa: E402
from builder.engine import Engine  # noqa: E402
from tests.engine import project_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arch", default="amd64,arm64")
    a = ap.parse_args()
    cfg = project_config(runtime=ROOT / ".cache" / "test-mirror" / "invoke.yaml")
    req = config.build_request(cfg, arch=a.arch)
    gosu = pipeline.fetch_for(req, io.StringIO())
    engine = Engine()
    revision = images.git_revision(ROOT)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(a.rounds):
        for t in req.targets:
            base = images.resolve_base(req.settings, t.flavor, t.arch)
            with tempfile.TemporaryDirectory() as ctx:
                Path(ctx, "Dockerfile").write_text(f"FROM {base.repo_ref}@{base.digest}\nRUN true\n")
                start = time.perf_counter()
                engine.build(Path(ctx), f"base-gosu-bench/baseline:{t.name}", str(t.arch.platform), no_cache=True)
                times.setdefault((t.name, "baseline"), []).append(time.perf_counter() - start)
            for label, no_cache in (("cold", True), ("warm", False)):
                start = time.perf_counter()
                images.build(engine, req.settings, t, gosu[t.arch.dpkg], revision, no_cache=no_cache)
                times.setdefault((t.name, label), []).append(time.perf_counter() - start)
    print(f"{'image (median of %d interleaved rounds)' % a.rounds:40} {'baseline s':>10} {'cold s':>8} "
          f"{'cold/base':>9} {'warm s':>8} {'warm/base':>9}")
    for t in req.targets:
        b, c, w = (statistics.median(times[(t.name, k)]) for k in ("baseline", "cold", "warm"))
        print(f"{t.name:40} {b:10.2f} {c:8.2f} {c / b:9.2f} {w:8.2f} {w / b:9.2f}")


if __name__ == "__main__":
    main()
