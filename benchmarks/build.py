#!/usr/bin/env python3
"""Benchmark image assembly against `docker build`, per flavor/arch and for the whole build; prints tables.

Per image: assembly (base read from the registry, layer computed, loaded into
the engine) against `docker build` of tests/reference/Dockerfile (the
distribution's own useradd/adduser, under emulation for foreign arches),
cold (empty store / --no-cache) and warm (nothing changed).
Whole build: `invoke build` of every flavor x arch, cold and warm, against
one `FROM <base digest>` + `RUN true` --no-cache build per image, i.e. what
the engine costs before any work of ours. Rounds are interleaved; medians.

    .venv/bin/python benchmarks/build.py [--rounds 3] [--arch amd64,arm64]

Needs `invoke up` and `invoke test-mirror`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import pipeline, wiring
from builder.image import make  # noqa: E402
from builder.image.assembly.store import Store  # noqa: E402
from builder.core.engine import Engine  # noqa: E402
from benchmarks.common import project_config  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def reference_build(engine: Engine, req, t, gosu, base, tag: str, no_cache: bool) -> None:
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copyfile(gosu.path, Path(ctx) / "gosu")
        shutil.copyfile(ROOT / "images" / "entrypoint.sh", Path(ctx) / "entrypoint.sh")
        s = req.settings
        engine.build(Path(ctx), tag, str(t.platform), dockerfile=ROOT / "tests" / "reference" / "Dockerfile",
                     build_args={"BASE_IMAGE": f"{base.repo_ref}@{base.digest}", "OPS_USER": s.ops_user,
                                 "OPS_UID": str(s.ops_uid), "OPS_GID": str(s.ops_gid)}, no_cache=no_cache)


def trivial_build(engine: Engine, t, base, tag: str) -> None:
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(f"FROM {base.repo_ref}@{base.digest}\nRUN true\n")
        engine.build(Path(ctx), tag, str(t.platform), no_cache=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--arch", default="amd64,arm64")
    a = ap.parse_args()
    cfg = project_config(runtime=ROOT / ".cache" / "test-mirror" / "invoke.yaml")
    req = wiring.build_request(wiring.settings(cfg), arch=a.arch)
    req = dataclasses.replace(req, settings=dataclasses.replace(
        req.settings, repository=f"{req.settings.repository}-bench"))
    engine = Engine()
    run = pipeline.plan(req, io.StringIO())
    plans = {p.name: p for p in run.images}
    gosu = {t.name: run.gosu[plans[t.name].gosu.arch] for t in req.targets}
    bases = {t.name: plans[t.name].base for t in req.targets}
    times: dict[tuple[str, str], list[float]] = {}

    def note(key, seconds):
        times.setdefault(key, []).append(seconds)

    for _ in range(a.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
            store = Store(Path(tmp))
            for t in req.targets:
                tag = req.settings.tag(t.flavor.name, t.arch.dpkg, t.flavor.release)
                ref_tag = f"{req.settings.repository}-reference:{t.name}"
                engine.remove_image(tag)

                def assemble():
                    make.load(engine, [make.build(store, plans[t.name], gosu[t.name], req.entrypoint)])
                note((t.name, "assembly cold"), timed(assemble))
                note((t.name, "assembly warm"), timed(assemble))
                note((t.name, "docker build cold"), timed(lambda: reference_build(
                    engine, req, t, gosu[t.name], bases[t.name], ref_tag, True)))
                note((t.name, "docker build warm"), timed(lambda: reference_build(
                    engine, req, t, gosu[t.name], bases[t.name], ref_tag, False)))
        for t in req.targets:
            engine.remove_image(req.settings.tag(t.flavor.name, t.arch.dpkg, t.flavor.release))
        with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
            whole = dataclasses.replace(req, store=Path(tmp))
            note(("all", "assembly cold"), timed(lambda: pipeline.build(whole, engine, io.StringIO())))
            note(("all", "assembly warm"), timed(lambda: pipeline.build(whole, engine, io.StringIO())))
        note(("all", "trivial"), sum(timed(lambda t=t: trivial_build(
            engine, t, bases[t.name], f"{req.settings.repository}-trivial:{t.name}")) for t in req.targets))

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"per image (median of {a.rounds} interleaved rounds; docker build = tests/reference/Dockerfile)")
    print(f"{'image':16} {'docker cold s':>13} {'assembly cold s':>15} {'ratio':>6} {'docker warm s':>13} "
          f"{'assembly warm s':>15} {'ratio':>6}")
    for t in req.targets:
        dc, ac, dw, aw = (med[(t.name, k)] for k in ("docker build cold", "assembly cold", "docker build warm",
                                                     "assembly warm"))
        print(f"{t.name:16} {dc:13.2f} {ac:15.2f} {ac / dc:6.2f} {dw:13.2f} {aw:15.2f} {aw / dw:6.2f}")
    n = len(req.targets)
    base, cold, warm = med[("all", "trivial")], med[("all", "assembly cold")], med[("all", "assembly warm")]
    print(f"\nwhole build of {n} images (fetch + verify gosu, assemble, load into the engine)")
    print(f"{'baseline: ' + str(n) + ' x FROM base + RUN true, --no-cache':44} {base:6.2f} s")
    print(f"{'invoke build, cold (empty store, not loaded)':44} {cold:6.2f} s  {cold / base:5.2f}x baseline")
    print(f"{'invoke build, nothing changed':44} {warm:6.2f} s  {warm / base:5.2f}x baseline")


if __name__ == "__main__":
    main()
