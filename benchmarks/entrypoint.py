#!/usr/bin/env python3
"""Benchmark container start cost and volume remap cost; prints a table.

Every figure is the median of interleaved rounds, shown beside a baseline
measured in the same rounds, so machine noise hits both sides alike. The
named rows:

  P1   start with the entrypoint (no remap; two mounts, so the mount check
       has work) / start with `gosu ops` directly, same mounts
  P1u  the same with USER_ID=2000 (a passwd rewrite on every start)
  P1r  restart of a container whose remap is done (two mounts) / restart of
       one that runs gosu directly
  P1g  P1 and P1r with --group-add 44 and one --device whose group the app
  P1rg must join (the groups written on the first start; a restart finds them)
  P6   start as an arbitrary uid with gid 0 (--user 4242:0, no account: HOME
       and, on minideb, nss_wrapper's passwd) / the same start with
       `--entrypoint true`, the app directly
  P3   first CHOWN_PATHS fix of a 100k-file volume / a bare `chown -R` of
       the same volume, both in a container; and the restart that follows,
       which must write nothing (checked: no ctime changes)

    .venv/bin/python benchmarks/entrypoint.py [--rounds 5] [--files 100000] [--image IMAGE]

Needs `invoke up`, `invoke test-mirror` and built images
(`invoke -f .cache/test-mirror/invoke.yaml build --arch amd64`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.core.engine import Engine  # noqa: E402

IMAGE = "org/base-gosu:minideb-trixie-amd64"
ENGINE = Engine()
GOALS = {"P1": 1.15, "P1g": 1.15, "P1r": 1.25, "P1rg": 1.25, "P3": 1.2}

# (a) the widely copied entrypoint: usermod/groupmod ops to the mount owner.
USERMOD = """#!/bin/sh
set -e
uid=$(stat -c %u /app); gid=$(stat -c %g /app)
if [ "$uid" != 0 ] && [ "$uid" != "$(id -u ops)" ]; then
  groupmod -o -g "$gid" ops; usermod -o -u "$uid" ops
fi
exec gosu ops "$@"
"""
# (b) what the official images do: chown the data to the app user.
FINDCHOWN = """#!/bin/sh
set -e
find /app \\! -user ops -exec chown ops:ops {} +
exec gosu ops "$@"
"""


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(["docker", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def variant(name: str, script: str) -> str:
    tag = f"base-gosu-bench/{name}:latest"
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "entrypoint").write_text(script)
        Path(ctx, "Dockerfile").write_text(f"FROM {IMAGE}\nCOPY entrypoint /usr/local/bin/entrypoint\n"
                                           "RUN chmod 0755 /usr/local/bin/entrypoint\n")
        ENGINE.build(Path(ctx), tag, "linux/amd64")
    return tag


def volume(files: int, owner: int) -> str:
    d = tempfile.mkdtemp(prefix="bench-vol-")
    for i in range(files):
        open(os.path.join(d, f"f{i}"), "w").close()
    chown_all(d, owner)
    return d


def chown_all(d: str, owner: int) -> None:
    os.chown(d, owner, owner)
    for e in os.scandir(d):
        os.chown(e.path, owner, owner)


def ctimes(d: str) -> list[int]:
    return [os.lstat(d).st_ctime_ns] + [e.stat(follow_symlinks=False).st_ctime_ns for e in os.scandir(d)]


def run(image: str, *opts: str) -> float:
    return timed("run", "--rm", "--network", "none", *opts, image, "true")


def restart(name: str) -> float:
    return timed("start", "-a", name)


def created(image: str, *opts: str, cmd: tuple[str, ...] = ("true",)) -> str:
    name = f"bench-{os.urandom(4).hex()}"
    subprocess.run(["docker", "create", "--name", name, "--network", "none", *opts, image, *cmd], check=True,
                   capture_output=True)
    subprocess.run(["docker", "start", "-a", name], check=True, capture_output=True)  # the first remap
    return name


def main() -> None:
    global IMAGE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--image", default=IMAGE, help=f"a minideb image of this project (default {IMAGE})")
    a = ap.parse_args()
    IMAGE = a.image
    n = f"{a.files // 1000}k" if a.files >= 1000 else str(a.files)
    usermod, findchown = variant("usermod", USERMOD), variant("findchown", FINDCHOWN)
    big, empty = volume(a.files, 4321), volume(0, 4321)
    fix = volume(a.files, 4321)
    m1, m2 = volume(3, 0), volume(3, 0)
    mounts = ("-v", f"{m1}:/data", "-v", f"{m2}:/more")
    dev_dir = tempfile.mkdtemp(prefix="bench-dev-")
    os.mknod(f"{dev_dir}/render", 0o660 | 0o020000, os.makedev(1, 3))
    os.chown(f"{dev_dir}/render", 0, 4711)
    extra = ("--group-add", "44", "--device", f"{dev_dir}/render:/dev/dri/renderD128", *mounts)
    rows: dict[str, list[float]] = {}
    wrote_on_restart = []

    def add(key, value):
        rows.setdefault(key, []).append(value)

    keep = {"ours": created(IMAGE, "-v", f"{big}:/app"), "ours-empty": created(IMAGE, "-v", f"{empty}:/app"),
            "usermod": created(usermod, "-v", f"{big}:/app"),
            "P1r": created(IMAGE, "-e", "USER_ID=2000", *mounts),
            "P1r-base": created(IMAGE, "--entrypoint", "gosu", *mounts, cmd=("ops", "true")),
            "P1rg": created(IMAGE, "-e", "USER_ID=2000", *extra),
            "P1rg-base": created(IMAGE, "--entrypoint", "gosu", *extra, cmd=("ops", "true"))}
    try:
        for _ in range(a.rounds):
            add("P1 base: gosu directly, 2 mounts",
                timed("run", "--rm", "--network", "none", "--entrypoint", "gosu", *mounts, IMAGE, "ops", "true"))
            add("P1: entrypoint, no remap, 2 mounts", run(IMAGE, *mounts))
            add("P1u: entrypoint, USER_ID=2000, 2 mounts", run(IMAGE, "-e", "USER_ID=2000", *mounts))
            add("P1r base: restart, gosu directly, 2 mounts", restart(keep["P1r-base"]))
            add("P1r: restart, remap done, 2 mounts", restart(keep["P1r"]))
            add("P1g base: gosu directly, 2 mounts, group, device",
                timed("run", "--rm", "--network", "none", "--entrypoint", "gosu", *extra, IMAGE, "ops", "true"))
            add("P1g: entrypoint, no remap, 2 mounts, group, device", run(IMAGE, *extra))
            add("P1rg base: restart, gosu directly, group, device", restart(keep["P1rg-base"]))
            add("P1rg: restart, remap done, group, device", restart(keep["P1rg"]))
            add("P6 base: --user 4242:0, --entrypoint true",
                timed("run", "--rm", "--network", "none", "--user", "4242:0", "--entrypoint", "true", IMAGE))
            add("P6: --user 4242:0, entrypoint", run(IMAGE, "--user", "4242:0"))
            chown_all(fix, 4321)
            add(f"P3 base: bare chown -R, {n}-file volume", timed(
                "run", "--rm", "--network", "none", "--entrypoint", "chown", "-v", f"{fix}:/data", IMAGE,
                "-R", "2000:2000", "/data"))
            chown_all(fix, 4321)
            p3 = ("-v", f"{fix}:/data", "-e", "USER_ID=2000", "-e", "CHOWN_PATHS=/data")
            add(f"P3: CHOWN_PATHS first fix, {n}-file volume", run(IMAGE, *p3))
            before = ctimes(fix)
            add("P3 restart: CHOWN_PATHS, nothing to change", run(IMAGE, *p3))
            wrote_on_restart.append(sum(x != y for x, y in zip(before, ctimes(fix))))
            add("start: gosu directly (baseline)",
                timed("run", "--rm", "--network", "none", "--entrypoint", "gosu", IMAGE, "ops", "true"))
            add("start: entrypoint, no remap", run(IMAGE))
            add(f"remap first: ours, {n}-file volume", run(IMAGE, "-v", f"{big}:/app"))
            add("remap first: (a) usermod -u", run(usermod, "-v", f"{big}:/app"))
            chown_all(big, 4321)
            add("remap first: (b) find ! -user -exec chown", run(findchown, "-v", f"{big}:/app"))
            add("restart: (b) find ! -user -exec chown", run(findchown, "-v", f"{big}:/app"))
            chown_all(big, 4321)
            add("restart: ours, empty volume (baseline)", restart(keep["ours-empty"]))
            add(f"restart: ours, {n}-file volume", restart(keep["ours"]))
            add("restart: (a) usermod -u", restart(keep["usermod"]))
    finally:
        subprocess.run(["docker", "rm", "-f", *keep.values()], capture_output=True)
        shutil.rmtree(dev_dir, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    bases = {"P1": "P1 base: gosu directly, 2 mounts", "P1u": "P1 base: gosu directly, 2 mounts",
             "P1r": "P1r base: restart, gosu directly, 2 mounts",
             "P1g": "P1g base: gosu directly, 2 mounts, group, device",
             "P1rg": "P1rg base: restart, gosu directly, group, device",
             "P6": "P6 base: --user 4242:0, --entrypoint true", "P3": f"P3 base: bare chown -R, {n}-file volume",
             "P3 restart": f"P3 base: bare chown -R, {n}-file volume",
             "start": "start: gosu directly (baseline)", "remap": "start: gosu directly (baseline)",
             "restart": "restart: ours, empty volume (baseline)"}
    print(f"{'measure (median of %d interleaved rounds)' % a.rounds:50} {'seconds':>8} {'ratio':>7}  "
          f"{'goal':>5}  baseline")
    for k, v in med.items():
        prefix = next(p for p in sorted(bases, key=len, reverse=True) if k.startswith(p))
        base = bases[prefix]
        goal = GOALS.get(k.split(":")[0], "")
        print(f"{k:50} {v:8.3f} {v / med[base]:7.2f}  {goal!s:>5}  {base}")
    print(f"P3 restart: files whose ctime changed, per round: {wrote_on_restart} (must be all 0)")


if __name__ == "__main__":
    main()
