#!/usr/bin/env python3
"""Run one checkout's smoke checks on images already built, and print what they found as JSON.

benchmarks/smoke.py starts this once per checkout it compares (an older
revision in a worktree, and this one), so each suite runs its own code on the
very same images: `--tree DIR` is put first on the import path. The images
come on stdin as a JSON list of Subject fields; stdout is one JSON object:
wall seconds, each check's seconds and every failure's message.

    python benchmarks/smoke_checkout.py --tree DIR --jobs 4 < subjects.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import json
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", required=True, help="the checkout whose builder/ runs the checks")
    ap.add_argument("--jobs", type=int, required=True)
    a = ap.parse_args()
    sys.path.insert(0, a.tree)
    from builder.core.engine import Engine
    from builder.smoke import schedule
    from builder.smoke.checks.kit import Subject
    try:
        suite = importlib.import_module("builder.smoke.suite")
    except ImportError:  # before the module took its name
        suite = importlib.import_module("builder.smoke.run")
    engine = Engine()
    # An earlier revision's Subject may lack fields this one has: it gets the ones it knows.
    known = {f.name for f in dataclasses.fields(Subject)}
    subjects = [Subject(**{k: v for k, v in s.items() if k in known}) for s in json.load(sys.stdin)]
    out = io.StringIO()
    start = time.monotonic()
    failures = schedule.run_many(engine, subjects, suite.checks_for(engine), a.jobs, out)
    wall = time.monotonic() - start
    checks = [(line.split()[2].rstrip(":"), float(line.rsplit("(", 1)[1].split()[0]))
              for line in out.getvalue().splitlines() if line.startswith("smoke ")]
    json.dump({"wall": wall, "checks": checks, "failures": [str(f) for f in failures]}, sys.stdout)


if __name__ == "__main__":
    main()
