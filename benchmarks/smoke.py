#!/usr/bin/env python3
"""Smoke checks of this checkout against an earlier one's, on the same built images, in one run.

Builds the images once (the main job's six by default: minideb, ubuntu and
alpine for amd64 and arm64, gosu from Debian's archive), then runs every
check on all of them with each checkout's own suite (an earlier revision in a
git worktree, then this one; alternately for --rounds), at the same
concurrency. Prints per run: wall time, the machine's CPU time (all
processes: the daemon, containers and qemu do the work), container starts as
the engine's own event log counts them, the sum of the checks' times, and the
ratio of wall time to the first baseline run.

With --broken, four deliberately broken variants of one amd64 image (a gosu
that is not gosu, a remap that never happens, a --group-add group not kept,
an entrypoint that does not exec) are checked by both suites, which must
fail them with the same messages.

    .venv/bin/python benchmarks/smoke.py [--baseline REV] [--flavor F,..] [--arch amd64,arm64] [--jobs N]
                                         [--rounds N] [--broken]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, project_config  # noqa: E402
from builder import pipeline, wiring  # noqa: E402
from builder.core import emulation  # noqa: E402
from builder.core.engine import Engine  # noqa: E402

# The checks as issue 32 found them ("today"), before any check shared a container start.
BASELINE = "dfc7fed"
ENTRYPOINT = "/usr/local/bin/entrypoint"
BROKEN = {
    "a gosu that is not gosu": "cp /bin/true /usr/local/bin/gosu",
    "a remap that never happens": f"sed -i 's/|| need_ids=1$/|| need_ids=0/' {ENTRYPOINT}",
    "a --group-add group not kept": f"sed -i 's/|| joins=\"$joins $g\" kept=\"$kept $g\"$/|| :/' {ENTRYPOINT}",
    "a signal not passed (no exec)": f"sed -i 's/^\\texec \"$@\"$/\\t\"$@\"/' {ENTRYPOINT}",
}


def cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (every process, user + system), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class StartCounter:
    """Container starts as the engine reports them, counted while they happen (the daemon keeps only its
    last 256 events for a later `events --since`)."""

    def __init__(self, engine: Engine):
        self.proc = subprocess.Popen([engine.binary, "events", "--filter", "type=container", "--filter",
                                      "event=start", "--format", "{{.ID}}"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)  # subscribed before the first start

    def stop(self) -> int:
        time.sleep(0.5)  # the last start's event delivered
        self.proc.terminate()
        return len(self.proc.communicate()[0].split())


def run_suite(engine: Engine, tree: Path, subjects: list, jobs: int) -> dict:
    """One checkout's checks on `subjects`, in a process of its own: its code, these images."""
    counter, cpu = StartCounter(engine), cpu_seconds()
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "smoke_checkout.py"), "--tree", str(tree),
                        "--jobs", str(jobs)], input=json.dumps([dataclasses.asdict(s) for s in subjects]),
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        sys.exit(f"smoke checks of {tree} did not run: {p.stderr.strip()[-2000:]}")
    result = json.loads(p.stdout)
    result["cpu"], result["starts"] = cpu_seconds() - cpu, counter.stop()
    return result


def _steady(message: str) -> str:
    """A failure's message without what differs from run to run: the pid a broken entrypoint's app got."""
    return re.sub(r"app reported 'pid \d+'", "app reported 'pid N'", message)


def short_rev(ref: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], check=True, capture_output=True,
                          text=True).stdout.strip()


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True,
                   capture_output=True)
    return where


def broken_variants(engine: Engine, good, ctx: Path) -> dict[str, object]:
    """Each BROKEN change made on top of `good`, as a Subject that runs it."""
    made = {}
    for i, (what, command) in enumerate(BROKEN.items()):
        d = ctx / f"broken-{i}"
        d.mkdir()
        (d / "Dockerfile").write_text(f"FROM {good.image}\nRUN {command}\n")
        tag = f"base-gosu-bench/broken-{i}:{good.arch}"
        engine.build(d, tag, good.platform)
        made[what] = dataclasses.replace(good, image=tag, ref="")
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=BASELINE, help=f"the revision compared against (default {BASELINE})")
    ap.add_argument("--flavor", default="minideb,ubuntu,alpine")
    ap.add_argument("--arch", default="amd64,arm64")
    ap.add_argument("--jobs", type=int, default=0, help="checks at once (default: smoke.jobs)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--broken", action="store_true", help="also compare verdicts on broken images")
    a = ap.parse_args()
    cfg = project_config()
    jobs = a.jobs or int(cfg.smoke.jobs)
    engine = Engine()
    req = wiring.build_request(wiring.settings(cfg), flavor=a.flavor, arch=a.arch, source="debian")
    wiring.seed(wiring.settings(cfg), req)
    built = pipeline.build(req, engine, io.StringIO())
    emulation.ensure([b.target.arch.dpkg for b in built], io.StringIO(), "benchmark")
    subjects = [pipeline.subject_of(b, by_id=True) for b in built]
    rev, head = short_rev(a.baseline), short_rev("HEAD")
    with tempfile.TemporaryDirectory(prefix="smoke-bench-") as tmp:
        base_tree = worktree(rev, Path(tmp) / "baseline")
        try:
            suites = {f"baseline {rev}": base_tree, f"this checkout ({head}+)": ROOT}
            print(f"{len(subjects)} images ({', '.join(b.target.name for b in built)}), {jobs} checks at once, "
                  f"{os.cpu_count()} CPUs")
            print(f"{'suite':<24} {'wall s':>7} {'vs base':>7} {'CPU s':>7} {'starts':>6} {'check s':>8} "
                  f"{'failures':>8}")
            base = None
            for _ in range(a.rounds):
                for name, tree in suites.items():
                    r = run_suite(engine, tree, subjects, jobs)
                    base = base or r["wall"]
                    print(f"{name:<24} {r['wall']:>7.1f} {r['wall'] / base:>7.2f} {r['cpu']:>7.1f} "
                          f"{r['starts']:>6} {sum(s for _, s in r['checks']):>8.1f} {len(r['failures']):>8}",
                          flush=True)
                    for f in r["failures"]:
                        print(f"     FAILED {f[:300]}")
            if a.broken:
                good = next(s for s in subjects if s.arch == "amd64")
                for what, subject in broken_variants(engine, good, Path(tmp)).items():
                    seen = {name: {_steady(f) for f in run_suite(engine, tree, [subject], jobs)["failures"]}
                            for name, tree in suites.items()}
                    base_seen, ours = seen.values()
                    print(f"\n{what} ({subject.image}): baseline {len(base_seen)} failures, this checkout "
                          f"{len(ours)}: {'the same messages' if base_seen == ours else 'DIFFERENT'}")
                    for f in sorted(ours | base_seen):
                        mark = " " if f in ours and f in base_seen else ("+" if f in ours else "-")
                        print(f"  {mark} {f[:220]}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                           capture_output=True)


if __name__ == "__main__":
    main()
