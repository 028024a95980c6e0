#!/usr/bin/env python3
"""P5: image size with nss_wrapper against the same image without it, per glibc flavor and arch; prints a table.

Both images are assembled from the same plan inputs (base, gosu, entrypoint,
account), once with images.nss_wrapper as configured and once with it off,
in a scratch store; nothing is loaded into the engine. Compressed: the sum
of the manifest's layer sizes (what a pull downloads). Uncompressed: the
sum of the layers' tar sizes (what the engine unpacks). The goal: ratio
<= 1.02.

    .venv/bin/python benchmarks/nss_wrapper.py [--flavor minideb,ubuntu] [--arch amd64,arm64|all]

Needs `invoke up` (the seeded bases); gosu comes from Debian's archive (cached after the first run).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder import pipeline, wiring  # noqa: E402
from builder.image.assembly import append  # noqa: E402
from builder.core.clients import Clients  # noqa: E402


def sizes(built, registry_for, unpacked: dict[str, int]) -> tuple[int, int]:
    """(compressed, uncompressed) bytes of every layer of the image; base layers unpacked once per digest."""
    image, store = built.image, built.store
    compressed = sum(d["size"] for d in image.layers)
    for d in image.layers[:-1]:
        if d["digest"] not in unpacked:
            blob = append.base_layer(store, registry_for(image.base.host), image, d["digest"])
            unpacked[d["digest"]] = len(gzip.decompress(blob))
    own = len(append.own_layer_tar(store, image))
    return compressed, sum(unpacked[d["digest"]] for d in image.layers[:-1]) + own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavor", default="minideb,ubuntu")
    ap.add_argument("--arch", default="amd64,arm64")
    a = ap.parse_args()
    req = wiring.build_request(wiring.settings(wiring.project_config()), flavor=a.flavor, arch=a.arch, source="debian")
    registry_for, unpacked = Clients(), {}
    with tempfile.TemporaryDirectory(prefix="bench-nss-") as tmp:
        rows = {}
        for label, r in (("with", req), ("without", dataclasses.replace(req, nss_wrapper=None))):
            r = dataclasses.replace(r, store=Path(tmp) / label)
            run = pipeline.plan(r, io.StringIO())
            for b in pipeline.assemble_images(r, run, io.StringIO()):
                rows.setdefault(b.plan.name, {})[label] = (sizes(b, registry_for, unpacked), b)
    print("P5: image size with nss_wrapper / without (goal <= 1.02); bytes; base from the local registry")
    head = (f"{'image':<16} {'library':>8} {'compressed w/o':>15} {'with':>11} {'P5':>7} "
            f"{'uncompressed w/o':>17} {'with':>11} {'P5':>7}")
    print(head)
    print("-" * len(head))
    worst = 0.0
    for name, row in rows.items():
        (cw, uw), b = row["with"]
        (co, uo), _ = row["without"]
        lib = len(b.plan.nss_wrapper.data) if b.plan.nss_wrapper else 0
        worst = max(worst, cw / co, uw / uo)
        print(f"{name:<16} {lib:>8} {co:>15} {cw:>11} {cw / co:>7.4f} {uo:>17} {uw:>11} {uw / uo:>7.4f}")
    print(f"worst P5: {worst:.4f} ({'within' if worst <= 1.02 else 'OVER'} the goal of 1.02)")


if __name__ == "__main__":
    main()
