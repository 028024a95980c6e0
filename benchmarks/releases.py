#!/usr/bin/env python3
"""Benchmark `release` per release: cold and warm `release` (each flavor's default release), then a cold
`release --release all` one release at a time (its seeding, build and smoke times); prints a table.

"Cold" is a machine after `invoke up` with nothing seeded, built or cached: every run here gets a
docker-registry of its own on a free loopback port, an empty seed state (no cached Debian bootstrap) and
an empty image store, so the shared local registry is never touched. Warm is the same command again.
The cold `release` row is the baseline the per-release rows are compared with.

    .venv/bin/python benchmarks/releases.py [--arch amd64,arm64] [--flavor minideb,ubuntu,alpine] [--skip-all]

Needs `invoke up` (engine, qemu, docker-registry, cosign).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import free_port, project_config  # noqa: E402
from builder import config  # noqa: E402
from builder.local import setup as local  # noqa: E402

SEED = re.compile(r"^seed: .*\(([0-9.]+) s\); index", re.M)
ASSEMBLED = re.compile(r"^assembled .* in ([0-9.]+) s", re.M)
SMOKE = re.compile(r"^smoke: all .*\(([0-9.]+) s, ", re.M)


def run(tmp: Path, args: list[str], port: int) -> tuple[float, str, int]:
    env = {**os.environ, "INVOKE_LOCAL_REGISTRY_PORT": str(port), "INVOKE_IMAGES_BASE_MIRROR": f"127.0.0.1:{port}",
           "INVOKE_LOCAL_STATE_DIR": str(tmp / "state"), "INVOKE_IMAGES_STORE": str(tmp / "store"),
           "INVOKE_IMAGES_REPOSITORY": "bench-releases/base-gosu"}
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "invoke", "release", *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=7200)
    return time.monotonic() - start, p.stdout + p.stderr, p.returncode


def parts(out: str) -> tuple[float, float, float]:
    return (sum(float(x) for x in SEED.findall(out)), sum(float(x) for x in ASSEMBLED.findall(out)),
            sum(float(x) for x in SMOKE.findall(out)))


class Fresh:
    """A registry and state of its own, for one cold run."""

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="bench-releases-")
        self.tmp, self.port = Path(self.dir.name), free_port()
        self.pid = local.start_registry(self.tmp / "registry", f"127.0.0.1:{self.port}")
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGTERM)
        self.dir.cleanup()


def row(what: str, seconds: float, out: str, rc: int, baseline: float) -> str:
    seed, build, smoke = parts(out)
    status = "ok" if rc == 0 else ("not seedable here" if "not seedable here" in out or "no minirootfs" in out
                                   else f"failed: {out.strip().splitlines()[-1][:60]}")
    return (f"| {what} | {seconds:.0f} | {seed:.0f} | {build:.1f} | {smoke:.0f} | "
            f"{seconds / baseline:.2f} | {status} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="", help="arches (default: publish.arches, else local.arches)")
    ap.add_argument("--flavor", default="", help="flavors whose releases the cold --release all part takes")
    ap.add_argument("--skip-all", action="store_true", help="only the cold and warm `release` rows")
    a = ap.parse_args()
    arch = ["--arch", a.arch] if a.arch else []
    print("| run | total s | seeding s | build s | smoke s | / cold release | |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    with Fresh() as f:
        cold, out, rc = run(f.tmp, arch, f.port)
        print(row("release, cold (default releases)", cold, out, rc, cold), flush=True)
        warm, out, rc = run(f.tmp, arch, f.port)
        print(row("release, warm", warm, out, rc, cold), flush=True)
    if a.skip_all:
        return
    cfg = project_config()
    settings = config.image_settings(cfg.images, cfg.local)
    flavors = [x for x in a.flavor.split(",") if x] or list(settings.releases)
    total = 0.0
    # One fresh registry for the whole --release all run: releases that share a Debian suite share its bootstrap,
    # as they would in one `release --release all`.
    with Fresh() as f:
        for name in flavors:
            for release in settings.releases[name]:
                seconds, out, rc = run(f.tmp, ["--flavor", name, "--release", release, *arch], f.port)
                total += seconds
                print(row(f"release --release all: {name} {release}", seconds, out, rc, cold), flush=True)
    print(f"| release --release all, in all | {total:.0f} | | | | {total / cold:.2f} | |", flush=True)


if __name__ == "__main__":
    main()
