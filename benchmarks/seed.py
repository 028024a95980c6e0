#!/usr/bin/env python3
"""Benchmark seeding the local registry's bases per arch: Debian by debootstrap vs mmdebstrap; Alpine; prints tables.

Debian: the ubuntu stand-in's whole seeding cost per arch (bootstrap, under
qemu for foreign arches, then the tar, the user layer and the push into a
throwaway registry), once with each tool from an empty cache, in the same
run, one bootstrap at a time. The ratio is debootstrap's time over
mmdebstrap's. Alpine: each arch's tarball checked and pushed as is.

    .venv/bin/python benchmarks/seed.py [--arch amd64,arm64] [--alpine-arch all] [--keep DIR]
    .venv/bin/python benchmarks/seed.py --jobs 2 [--arch arm64,armhf]

    .venv/bin/python benchmarks/seed.py --modes [--pairs bookworm/arm64,...] [--twice] [--keep DIR]

--keep DIR keeps the mmdebstrap layers (what `invoke up` would make) in DIR/rootfs.
--modes instead makes the Debian layer of each suite/arch the Debian stand-ins are seeded from (every arch of
every seedable release, less --skip: what the mirror lacks) from an empty cache, once emulated (before
local.debian_mode) and once chrootless (after), one at a time; the ratio is emulated over chrootless, the
trees are compared entry by entry (type, mode, owners, link, content; not mtimes) and "same layer" says whether
the two uncompressed layers (diff_id) are the same bytes. --twice makes each chrootless
layer a second time from an empty cache and says whether its digest is the same.
--jobs N instead seeds the ubuntu stand-in's arches together, from an empty cache, once one at a time and
once N at a time (local.seed_jobs), in the same run; the ratio is N at a time over one at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import os
import shutil
import signal
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import config
from builder.local import rootfs, setup as local, seed, seedimage  # noqa: E402
from builder.config.settings import CHROOTLESS, DEBIAN_MODES, EMULATED  # noqa: E402
from benchmarks.common import free_port, project_config  # noqa: E402


def timed_seed(settings, s: seedimage.Seed, arch: str, log) -> tuple[float, int]:
    start = time.perf_counter()
    out = seed.seed_base(settings, s, [arch], log)
    if out.seeded != [arch]:
        raise SystemExit(f"{s.name} {arch}: not seeded: {out}")
    return time.perf_counter() - start, sum(p.stat().st_size for p in (settings.state_dir / "rootfs").glob("*.tar.gz"))


def together(base, port: int, s: seedimage.Seed, debian: list[str], jobs: int, tmp: Path, log) -> None:
    """One seed of every arch in `debian`, from an empty cache, one at a time and then `jobs` at a time."""
    print(f"| ubuntu stand-in, {len(debian)} arches ({','.join(debian)}) | seconds | ratio |\n|---|---:|---:|",
          flush=True)
    times = {}
    for n in (1, jobs):
        settings = dataclasses.replace(base, registry_port=port, state_dir=tmp / f"jobs-{n}", seed_jobs=n,
                                       debian_bootstrap="mmdebstrap")
        # Each round its own repository, so the second does not find the first's children.
        one = dataclasses.replace(s, name=f"bench/jobs-{n}:{s.tags[0]}")
        start = time.perf_counter()
        out = seed.seed_base(settings, one, debian, log)
        times[n] = time.perf_counter() - start
        if sorted(out.seeded) != sorted(debian):
            raise SystemExit(f"{one.name}: not every arch was seeded: {out}")
        print(f"| {n} at a time | {times[n]:.0f} | {times[n] / times[1]:.2f} |", flush=True)
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def tree(blob: bytes) -> dict[str, tuple]:
    """Each entry of a layer as what it is (type, mode, owners, link, content), whatever its mtime."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as t:
        for ti in t:
            data = hashlib.sha256(t.extractfile(ti).read()).hexdigest() if ti.isfile() else ""
            out[ti.name] = (ti.type, ti.mode, ti.uid, ti.gid, ti.linkname, data)
    return out


def differences(a: bytes, b: bytes) -> str:
    ta, tb = tree(a), tree(b)
    names = sorted(set(ta) ^ set(tb)) + [n for n in sorted(set(ta) & set(tb)) if ta[n] != tb[n]]
    return f"{len(names)}" + (f" ({', '.join(n.removeprefix('./') for n in names[:3])})" if names else "")


def every_pair(base, images, skip: set[str]) -> list[tuple[str, str]]:
    """(suite, arch) of every Debian stand-in's arch: what `invoke up --arch all --release all` bootstraps."""
    pairs = {}
    for s in seedimage.seeds(base, images):
        if s.kind != "alpine":
            for arch in s.flavor.arches:
                pairs[(base.suite_for(s.suite, arch), arch)] = None
    return sorted((p for p in pairs if "/".join(p) not in skip), key=lambda p: (p[0], p[1]))


def timed_layer(method: rootfs.Method, suite: str, arch: str, mirror: str, cache: Path, log
                ) -> tuple[float, rootfs.RootLayer]:
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    layer = rootfs.debian_layer(method, suite, arch, mirror, cache, log)
    return time.perf_counter() - start, layer


def modes(base, pairs: list[tuple[str, str]], twice: bool, keep: str, tmp: Path, log) -> None:
    """Emulated against chrootless per suite/arch, each from an empty cache, one at a time."""
    print(f"load average at the start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)\n", flush=True)
    print("| suite | arch | emulated s | chrootless s | ratio | entries that differ | same layer | same digest twice |"
          "\n|---|---|---:|---:|---:|---|---|---|", flush=True)
    totals = [0.0, 0.0]
    for suite, arch in pairs:
        row = {}
        for mode in DEBIAN_MODES[::-1]:
            row[mode] = timed_layer(rootfs.Method("mmdebstrap", mode), suite, arch, base.debian_mirror,
                                    tmp / mode, log)
            if keep:
                (Path(keep) / "rootfs").mkdir(parents=True, exist_ok=True)
                for f in (tmp / mode).glob("debian-*"):
                    shutil.copyfile(f, Path(keep) / "rootfs" / f.name)
        (e, emulated), (c, chrootless) = row[EMULATED], row[CHROOTLESS]
        again = ""
        if twice:
            again = "yes" if timed_layer(rootfs.Method("mmdebstrap", CHROOTLESS), suite, arch,
                                         base.debian_mirror, tmp / "again", log)[1].digest == chrootless.digest \
                else "no"
        totals[0] += e
        totals[1] += c
        same = "yes" if emulated.diff_id == chrootless.diff_id else "no"
        print(f"| {suite} | {arch} | {e:.0f} | {c:.0f} | {e / c:.1f} | {differences(emulated.blob, chrootless.blob)} "
              f"| {same} | {again} |", flush=True)
    print(f"| all {len(pairs)} | | {totals[0]:.0f} | {totals[1]:.0f} | {totals[0] / totals[1]:.1f} | | | |",
          flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="", help="Debian arches (default: every arch of the ubuntu flavor)")
    ap.add_argument("--alpine-arch", default="all", help="Alpine arches (default: every one; none: skip)")
    ap.add_argument("--keep", default="", help="copy the mmdebstrap layers into DIR/rootfs")
    ap.add_argument("--jobs", type=int, default=0, help="compare seeding the arches N at a time with one at a time")
    ap.add_argument("--modes", action="store_true", help="compare emulated and chrootless Debian bootstraps")
    ap.add_argument("--pairs", default="", help="SUITE/ARCH,... for --modes (default: every stand-in's)")
    # Seen on 2026-12-02 (docs/publishing.md): deb.debian.org lacks trixie's newest point release for these.
    ap.add_argument("--skip", default="trixie/ppc64el,trixie/s390x,trixie/armel", help="SUITE/ARCH,... to leave out")
    ap.add_argument("--twice", action="store_true", help="--modes: make each chrootless layer twice")
    a = ap.parse_args()
    cfg = project_config()
    base = config.local_settings(cfg.local)
    images = config.image_settings(cfg.images, cfg.local)
    by_kind = {s.kind: s for s in seedimage.seeds(base, images)}
    debian = [x for x in (a.arch.split(",") if a.arch else by_kind["ubuntu"].flavor.arches) if x]
    alpine = [] if a.alpine_arch == "none" else (
        list(by_kind["alpine"].flavor.arches) if a.alpine_arch == "all" else a.alpine_arch.split(","))
    log = io.StringIO()
    if a.modes:
        pairs = [tuple(p.split("/", 1)) for p in a.pairs.split(",") if p] or every_pair(base, images,
                                                                                      set(a.skip.split(",")))
        with tempfile.TemporaryDirectory(prefix="bench-seed-", dir=ROOT / ".cache") as tmp:
            modes(base, pairs, a.twice, a.keep, Path(tmp), log)
        return
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        port = free_port()
        pid = local.start_registry(Path(tmp) / "registry", f"127.0.0.1:{port}")
        try:
            if a.jobs:
                together(base, port, by_kind["ubuntu"], debian, a.jobs, Path(tmp), log)
                return
            if alpine:
                print("| alpine arch | platform | seconds |\n|---|---|---:|", flush=True)
                settings = dataclasses.replace(base, registry_port=port, state_dir=Path(tmp) / "alpine")
                total = 0.0
                for arch in alpine:
                    seconds, _ = timed_seed(settings, by_kind["alpine"], arch, log)
                    total += seconds
                    platform = by_kind["alpine"].flavor.platform_of(seed.arches.get(arch, seed.arches.IMAGE_ARCHES))
                    print(f"| {arch} | {platform} | {seconds:.2f} |", flush=True)
                print(f"| all {len(alpine)} | | {total:.2f} |\n", flush=True)
            if debian:
                print("| ubuntu stand-in arch | suite | debootstrap s | mmdebstrap s | ratio | layer MB "
                      "(debootstrap / mmdebstrap) |\n|---|---|---:|---:|---:|---|", flush=True)
                totals = {"debootstrap": 0.0, "mmdebstrap": 0.0}
                for arch in debian:
                    row = {}
                    for tool in ("debootstrap", "mmdebstrap"):
                        state = Path(tmp) / f"{tool}-{arch}"
                        # Both tools emulated: debootstrap has no chrootless mode (--modes compares those).
                        settings = dataclasses.replace(base, registry_port=port, state_dir=state,
                                                       debian_bootstrap=tool, debian_mode=EMULATED)
                        row[tool] = timed_seed(settings, by_kind["ubuntu"], arch, log)
                        totals[tool] += row[tool][0]
                        if tool == "mmdebstrap" and a.keep:
                            (Path(a.keep) / "rootfs").mkdir(parents=True, exist_ok=True)
                            for f in (state / "rootfs").glob("debian-*"):
                                shutil.copyfile(f, Path(a.keep) / "rootfs" / f.name)
                        shutil.rmtree(state, ignore_errors=True)
                    (d, dsize), (m, msize) = row["debootstrap"], row["mmdebstrap"]
                    print(f"| {arch} | {base.suite_for(by_kind['ubuntu'].suite, arch)} | {d:.0f} | {m:.0f} | {d / m:.2f} | "
                          f"{dsize / 1e6:.0f} / {msize / 1e6:.0f} |", flush=True)
                d, m = totals["debootstrap"], totals["mmdebstrap"]
                print(f"| all {len(debian)} | | {d:.0f} | {m:.0f} | {d / m:.2f} | |", flush=True)
        finally:
            os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
