#!/usr/bin/env python3
"""Benchmark builds, container start cost and volume remap cost; prints a table.

Every figure is the median of interleaved rounds, shown beside a baseline
measured in the same rounds, so machine noise hits both sides alike.

    .venv/bin/python benchmarks/entrypoint.py [--rounds 5] [--files 100000]

Needs `invoke up`, `invoke test-mirror` and built images
(`invoke -f .cache/test-mirror/invoke.yaml build --arch amd64`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.engine import Engine  # noqa: E402

IMAGE = "org/base-gosu:minideb-amd64"
ENGINE = Engine()

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


def run(image: str, *opts: str) -> float:
    return timed("run", "--rm", "--network", "none", *opts, image, "true")


def restart(name: str) -> float:
    return timed("start", "-a", name)


def created(image: str, *opts: str) -> str:
    name = f"bench-{os.urandom(4).hex()}"
    subprocess.run(["docker", "create", "--name", name, "--network", "none", *opts, image, "true"], check=True,
                   capture_output=True)
    subprocess.run(["docker", "start", "-a", name], check=True, capture_output=True)  # the first remap
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=100_000)
    a = ap.parse_args()
    usermod, findchown = variant("usermod", USERMOD), variant("findchown", FINDCHOWN)
    big, empty = volume(a.files, 4321), volume(0, 4321)
    rows: dict[str, list[float]] = {}

    def add(key, value):
        rows.setdefault(key, []).append(value)

    keep = {"ours": created(IMAGE, "-v", f"{big}:/app"), "ours-empty": created(IMAGE, "-v", f"{empty}:/app"),
            "usermod": created(usermod, "-v", f"{big}:/app")}
    try:
        for _ in range(a.rounds):
            add("start: gosu directly (baseline)", timed("run", "--rm", "--network", "none", "--entrypoint", "gosu", IMAGE, "ops", "true"))
            add("start: entrypoint, no remap", run(IMAGE))
            add("start: entrypoint, USER_ID=2000", run(IMAGE, "-e", "USER_ID=2000"))
            add("remap first: ours, 100k-file volume", run(IMAGE, "-v", f"{big}:/app"))
            add("remap first: (a) usermod -u", run(usermod, "-v", f"{big}:/app"))
            chown_all(big, 4321)
            add("remap first: (b) find ! -user -exec chown", run(findchown, "-v", f"{big}:/app"))
            add("restart: (b) find ! -user -exec chown", run(findchown, "-v", f"{big}:/app"))
            chown_all(big, 4321)
            add("restart: ours, empty volume (baseline)", restart(keep["ours-empty"]))
            add("restart: ours, 100k-file volume", restart(keep["ours"]))
            add("restart: (a) usermod -u", restart(keep["usermod"]))
    finally:
        subprocess.run(["docker", "rm", "-f", *keep.values()], capture_output=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    base_start = med["start: gosu directly (baseline)"]
    base_restart = med["restart: ours, empty volume (baseline)"]
    print(f"{'measure (median of %d interleaved rounds)' % a.rounds:58} {'seconds':>8} {'ratio':>7}  baseline")
    for k, v in med.items():
        base, bname = (base_start, "gosu directly") if k.startswith(("start", "remap")) else \
            (base_restart, "ours, empty volume")
        print(f"{k:58} {v:8.3f} {v / base:7.2f}  {bname}")


if __name__ == "__main__":
    main()
