#!/usr/bin/env python3
"""Benchmark publishing 3 flavors x 2 arches to a loopback registry, cold and no-op; prints a table.

Each round starts fresh docker-registry instances on 127.0.0.1 (bases live in
the `invoke up` registry, so nothing can be mounted: every layer is sent).

* cold, end to end: `publish` into an empty registry with an empty image store
  (assemble, load, smoke, push, tags)
* push + tags: the same assembled, smoke-tested images into two other empty
  registries (their blobs are already compressed, once, by the build)
* baseline: `docker push` of the same images into an empty registry
  (the engine's own push: single-arch tags, no index)
* no-op: `publish` again into the first registry: the nightly run with nothing new
* signed: the cold end-to-end publish again into another empty registry with
  an empty store, signing and attesting every image and index with a cosign
  key (Debian's cosign), then its no-op republish (signs nothing new)

    .venv/bin/python benchmarks/publish.py [--rounds 3] [--flavor minideb,ubuntu,alpine]

Needs `invoke up` and `invoke test-mirror`.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import config, pipeline, shipping, wiring
from builder.local import setup as local, tools
from builder.publish import push as pub, signing  # noqa: E402
from builder.core.engine import Engine  # noqa: E402
from builder.config.settings import Destination  # noqa: E402
from builder.core.registry import Registry  # noqa: E402
from benchmarks.common import free_port, project_config  # noqa: E402

REPO = "org/base-gosu"
BASELINE = "baseline: docker push of the same images"
COLD = "cold, end to end (assemble, load, smoke, push, tag)"
SIGNED = "cold, end to end, signed + attested (cosign key)"
COSIGN = "  of which cosign: 6 signed + 12 attested, 3 indexes"
# The test mirror's gosu makes trial images, and alpine 3.20 (the alpine seedable here) is past its end of life.
TRIAL = shipping.PublishOptions(allow_trial=True, allow_eol=True)


class TimedSigner(signing.Signer):
    """Adds up the seconds spent in cosign (sign, attest, the key check): signing's own cost."""
    seconds: float = 0.0

    def run(self, args, registry, what):
        start = time.perf_counter()
        try:
            return super().run(args, registry, what)
        finally:
            self.seconds += time.perf_counter() - start


class Scratch:
    """An empty registry for one measurement; its stored blob bytes are what was sent."""

    def __init__(self, root: Path):
        self.root = root
        self.host = f"127.0.0.1:{free_port()}"
        self.pid = local.start_registry(root, self.host)

    def stored_bytes(self) -> int:
        blobs = self.root / "data" / "docker" / "registry" / "v2" / "blobs"
        return sum(p.stat().st_size for p in blobs.rglob("data"))

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def docker_push(engine: Engine, built, host: str) -> None:
    for b in built:
        ref = f"{host}/{REPO}:{b.target.name}"
        engine.tag(b.tag, ref)
        engine.run("push", "--quiet", ref, timeout=900)
        engine.remove_image(ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flavor", default=None)
    a = ap.parse_args()
    cfg = project_config(runtime=ROOT / ".cache" / "test-mirror" / "invoke.yaml")
    req = wiring.build_request(wiring.settings(cfg), flavor=a.flavor, arch="amd64,arm64")
    engine = Engine()
    # Assembled once; each image checked once.
    built = pipeline.smoke(req, engine, pipeline.build(req, engine, io.StringIO()), io.StringIO())
    cosign = tools.ensure(config.tool_settings(cfg), "cosign", local.native_arch())
    rows: dict[str, list[tuple[float, int]]] = {}

    def record(name, seconds, sent):
        rows.setdefault(name, []).append((seconds, sent))

    for _ in range(a.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
            regs = [Scratch(Path(tmp) / n) for n in ("e2e", "push-cold", "push-warm", "docker", "signed")]
            try:
                e2e, push_cold, push_warm, baseline, signed = regs
                client = Registry(e2e.host)
                dest = Destination(e2e.host, REPO)
                cold_req = dataclasses.replace(req, store=Path(tmp) / "store-e2e")
                s, _ = timed(lambda: shipping.publish(cold_req, engine, client, dest, io.StringIO(), TRIAL))
                record(COLD, s, client.bytes_uploaded)

                for label, reg in (("first", push_cold), ("second", push_warm)):
                    c2, d2 = Registry(reg.host), Destination(reg.host, REPO)
                    s, _ = timed(lambda: shipping.assemble(
                        [pub.push_child(c2, d2, b, io.StringIO())[0] for b in built], c2, d2, None, io.StringIO(), TRIAL))
                    record(f"push + tags only, assembled blobs ({label} registry)", s, c2.bytes_uploaded)

                s, _ = timed(lambda: docker_push(engine, built, baseline.host))
                record(BASELINE, s, baseline.stored_bytes())

                again = Registry(e2e.host)
                s, report = timed(lambda: shipping.publish(req, engine, again, dest, io.StringIO(), TRIAL))
                assert report.noop, "a republish of unchanged inputs must be a no-op"
                record("no-op republish, end to end", s, again.bytes_uploaded)

                prefix = Path(tmp) / "bench-key"
                os.environ["COSIGN_PASSWORD"] = "bench-pass"
                subprocess.run([str(cosign), "generate-key-pair", "--output-key-prefix", str(prefix)], check=True,
                               capture_output=True)
                signer = TimedSigner(cosign, signing.Identity(key=str(prefix.with_suffix(".key"))))
                sc, sd = Registry(signed.host), Destination(signed.host, REPO)
                signed_req = dataclasses.replace(req, store=Path(tmp) / "store-signed")
                s, _ = timed(lambda: shipping.publish(signed_req, engine, sc, sd, io.StringIO(),
                                                      dataclasses.replace(TRIAL, signer=signer)))
                record(SIGNED, s, sc.bytes_uploaded)
                record(COSIGN, signer.seconds, 0)
                signer2, again = signing.Signer(cosign, signer.identity), Registry(signed.host)
                s, report = timed(lambda: shipping.publish(req, engine, again, sd, io.StringIO(),
                                                           dataclasses.replace(TRIAL, signer=signer2)))
                assert report.noop and not signer2.signed, "a signed republish of unchanged inputs signs nothing"
                record("no-op republish, signed, end to end", s, again.bytes_uploaded)
            finally:
                for r in regs:
                    r.stop()

    n = len(req.targets)
    base = statistics.median(x[0] for x in rows[BASELINE])
    print(f"publish of {n} images ({', '.join(t.name for t in req.targets)}), median of {a.rounds} rounds")
    print(f"{'scenario':52} {'seconds':>8} {'vs docker push':>15} {'bytes uploaded':>15}")
    print("-" * 93)
    for name, vals in rows.items():
        s = statistics.median(v[0] for v in vals)
        sent = statistics.median(v[1] for v in vals)
        print(f"{name:52} {s:8.2f} {s / base:14.2f}x {int(sent):15,d}")
    cold, signed, spent = (statistics.median(v[0] for v in rows[k]) for k in (COLD, SIGNED, COSIGN))
    # Two cold runs differ by more than signing costs on a shared machine; cosign's own time is the cost.
    print(f"signing and attesting: {spent:.1f} s in cosign = {100 * spent / cold:.1f}% of the unsigned cold publish "
          f"(signed run {100 * (signed - cold) / cold:+.1f}% end to end; goal: at most 25%)")


if __name__ == "__main__":
    main()
