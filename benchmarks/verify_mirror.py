#!/usr/bin/env python3
"""`invoke verify --origin` on a mirror against plain `cosign verify` of the same images: time and requests.

Publishes alpine (amd64, arm64) signed to registry A, copies it to registry
B with `cosign copy` and `oras cp -r` (as docs/verifying.md shows), then, in
one run, verifies the copy at B: `invoke verify B --origin A` (signatures,
both attestations, gosu's sha256, each signature's repository), plain
`cosign verify` of the index and each child (signatures only, the baseline),
and cosign with both attestations of each child too (what invoke verify
checks, by hand). Requests to B are counted by a proxy on 127.0.0.1.

    .venv/bin/python benchmarks/verify_mirror.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.registry_requests import Recorder, Registry, make_proxy  # noqa: E402

MIRROR = "mirror/base-gosu"


def run(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({p.returncode}): {(p.stdout + p.stderr)[-2000:]}")
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    cosign, oras = ROOT / ".cache/tools/bin/cosign", ROOT / ".cache/tools/bin/oras"
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as tmp:
        tmp = Path(tmp)
        reg_a, reg_b = Registry(tmp / "a"), Registry(tmp / "b")
        rec = Recorder()
        proxy = make_proxy(("127.0.0.1", reg_b.port), rec)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        a_host, b_host = f"127.0.0.1:{reg_a.port}", f"127.0.0.1:{proxy.server_address[1]}"
        try:
            run([str(cosign), "generate-key-pair", "--output-key-prefix", str(tmp / "k")], {"COSIGN_PASSWORD": ""})
            run([".venv/bin/invoke", "publish", "--flavor", "alpine", "--arch", "amd64,arm64", "--registry", a_host,
                 "--allow-trial", "--sign-key", str(tmp / "k.key"), "--source", "debian"], {"COSIGN_PASSWORD": ""})
            src, dst = f"{a_host}/org/base-gosu:alpine", f"{b_host}/{MIRROR}:alpine"
            run([str(cosign), "copy", "--allow-http-registry", src, dst])
            run([str(oras), "cp", "-r", "--from-plain-http", "--to-plain-http", src, dst])
            index = json.loads(run([str(oras), "manifest", "fetch", "--plain-http", dst]).stdout)
            digest = run([str(oras), "resolve", "--plain-http", dst]).stdout.strip()
            children = [m["digest"] for m in index["manifests"]]
            key = ["--key", str(tmp / "k.pub"), "--insecure-ignore-tlog=true", "--allow-http-registry"]

            def invoke_verify():
                run([".venv/bin/invoke", "verify", dst, "--key", str(tmp / "k.pub"), "--origin", f"{a_host}/org/base-gosu"])

            def cosign_signatures():
                for d in [digest, *children]:
                    run([str(cosign), "verify", *key, f"{b_host}/{MIRROR}@{d}"])

            def cosign_everything():
                cosign_signatures()
                for d in children:
                    for kind in ("cyclonedx", "slsaprovenance1"):
                        run([str(cosign), "verify-attestation", "--type", kind, *key, f"{b_host}/{MIRROR}@{d}"])

            rows = []
            for label, fn in (("cosign verify: index + children (baseline)", cosign_signatures),
                              ("cosign verify + verify-attestation x2 per child", cosign_everything),
                              ("invoke verify --origin (all checks)", invoke_verify)):
                seconds = []
                for r in range(a.rounds):
                    rec.label = f"{label} {r}"
                    start = time.monotonic()
                    fn()
                    seconds.append(time.monotonic() - start)
                requests = len(rec.of(f"{label} 0"))
                rows.append((label, statistics.median(seconds), requests))
            base_s, base_r = rows[0][1], rows[0][2]
            print(f"verify a mirror's copy of alpine (index + {len(children)} children), {a.rounds} rounds, median")
            print(f"{'what':50} {'seconds':>8} {'ratio':>6} {'requests':>8} {'ratio':>6}")
            for label, s, n in rows:
                print(f"{label:50} {s:8.2f} {s / base_s:6.2f} {n:8} {n / base_r:6.2f}")
        finally:
            proxy.shutdown()
            reg_a.stop()
            reg_b.stop()


if __name__ == "__main__":
    main()
