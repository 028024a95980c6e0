#!/usr/bin/env python3
"""Smoke checks one after another against several at once (smoke.jobs), on the same built images, in one run.

Builds the images once (the main job's six by default: minideb, ubuntu and
alpine for amd64 and arm64, gosu from Debian's archive), then runs every
check on all of them with each `--jobs` value in turn, the first being the
baseline. Prints per setting: wall time, the machine's CPU time (all
processes: the daemon, containers and qemu do the work, not this process),
the ratio to the baseline, and the spread of one check's time (median and
slowest), which shows what waits on what: checks that slow down as jobs rise
are sharing a CPU (qemu), flat ones were waiting on the daemon.

    .venv/bin/python benchmarks/smoke.py [--flavor F,..] [--arch amd64,arm64|all] [--jobs 1,2,4,6]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import project_config  # noqa: E402
from builder import pipeline, wiring  # noqa: E402
from builder.core import emulation  # noqa: E402
from builder.core.engine import Engine  # noqa: E402
from builder.smoke import schedule, suite as smoke  # noqa: E402


def cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (every process, user + system), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]   # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


class Timed(io.StringIO):
    """Collects the per-check lines run_many prints: `smoke IMAGE CHECK: ok (S s)`."""
    def seconds(self) -> list[float]:
        return [float(line.rsplit("(", 1)[1].split()[0]) for line in self.getvalue().splitlines() if "(" in line]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavor", default="minideb,ubuntu,alpine")
    ap.add_argument("--arch", default="amd64,arm64")
    ap.add_argument("--jobs", default="1,2,4,6", help="settings to compare; the first is the baseline")
    a = ap.parse_args()
    settings = [int(j) for j in a.jobs.split(",")]
    cfg = project_config()
    engine = Engine()
    req = wiring.build_request(cfg, flavor=a.flavor, arch=a.arch, source="debian")
    wiring.seed(cfg, req)
    built = pipeline.build(req, engine, io.StringIO())
    emulation.ensure([b.target.arch.dpkg for b in built], io.StringIO(), "benchmark")
    subjects = [pipeline.subject_of(b, by_id=True) for b in built]
    checks = smoke.checks_for(engine)
    print(f"{len(subjects)} images ({', '.join(b.target.name for b in built)}), {len(checks)} checks each, "
          f"{os.cpu_count()} CPUs")
    print(f"{'jobs':>4} {'wall s':>7} {'vs base':>7} {'CPU s':>7} {'CPU/wall':>8} {'check median s':>14} "
          f"{'check max s':>11} {'failures':>8}")
    base = None
    for jobs in settings:
        out = Timed()
        cpu, start = cpu_seconds(), time.monotonic()
        failures = schedule.run_many(engine, subjects, checks, jobs, out)
        wall, used = time.monotonic() - start, cpu_seconds() - cpu
        base = base or wall
        spread = out.seconds()
        print(f"{jobs:>4} {wall:>7.1f} {wall / base:>7.2f} {used:>7.1f} {used / wall:>8.2f} "
              f"{statistics.median(spread):>14.2f} {max(spread):>11.2f} {len(failures):>8}", flush=True)
        for f in failures:
            print(f"     FAILED {f}")


if __name__ == "__main__":
    main()
