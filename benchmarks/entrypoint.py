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

--in-container measures the start-up cost without the engine's: inside one
running container per flavor, a small static timer (compiled here with gcc)
runs `gosu ops true`, the entrypoint before the split (--before, default the
parent of the commit that split it) and the current one, interleaved, each
run with fresh stdout/stderr pipes as a container start has, and prints p50
and p95 with the ratio to the baseline of the same rounds:

  nothing to change   `entrypoint true` / `gosu ops true`
  first remap         USER_ID alternating between two values, so every run
                      rewrites the account files / `gosu ops true`
  restart after remap USER_ID=1500 with the remap done / `gosu ops true`
  arbitrary uid       uid 4242, gid 0, HOME=/ / `true` as that uid

and, in the rounds of "nothing to change", three floors: a shell that only
execs gosu; one that also hands stdio to the app (the chown no shell
entrypoint can skip: each start's pipes are new and root's); and one that
also stats the workdir (MAP_NODE_UID's default).

    .venv/bin/python benchmarks/entrypoint.py --in-container [--runs 150] [--flavor minideb ...]
"""

from __future__ import annotations

import argparse
import io
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


# The timer: runs each SPEC ("NAME=VALUE ... [@UID:GID] PROG ARG ...") in turn, ROUNDS times after one
# uncounted round, each with stdin /dev/null and fresh stdout/stderr pipes it drains; prints per SPEC its
# index, p50 and p95 in microseconds and how many runs failed.
TIMER_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return (x > y) - (x < y); }
static double run(char *spec, int *failed) {
    char *words[64]; int n = 0; char *copy = strdup(spec), *save = 0;
    for (char *w = strtok_r(copy, " ", &save); w && n < 63; w = strtok_r(0, " ", &save)) words[n++] = w;
    words[n] = 0;
    int out[2], err[2]; pipe(out); pipe(err);
    struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        int i = 0;
        for (; words[i] && strchr(words[i], '=') && words[i][0] != '@' && words[i][0] != '/'; i++) putenv(words[i]);
        if (words[i] && words[i][0] == '@') {
            unsigned uid, gid; sscanf(words[i] + 1, "%u:%u", &uid, &gid);
            setgroups(0, 0); setgid(gid); setuid(uid); i++;
        }
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0); dup2(out[1], 1); dup2(err[1], 2);
        close(out[0]); close(err[0]); close(out[1]); close(err[1]);
        execvp(words[i], words + i); _exit(127);
    }
    close(out[1]); close(err[1]);
    struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}}; char buf[4096]; int open_fds = 2;
    while (open_fds > 0 && poll(fds, 2, -1) > 0)
        for (int k = 0; k < 2; k++)
            if (fds[k].fd >= 0 && fds[k].revents && read(fds[k].fd, buf, sizeof buf) <= 0) {
                close(fds[k].fd); fds[k].fd = -1; open_fds--;
            }
    int status; waitpid(pid, &status, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) (*failed)++;
    free(copy);
    return (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
}
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]), specs = argc - 2, failed[64] = {0}, ignored = 0;
    double *t = calloc((size_t)rounds * specs, sizeof *t);
    for (int s = 0; s < specs; s++) run(argv[s + 2], &ignored);
    for (int r = 0; r < rounds; r++)
        for (int s = 0; s < specs; s++) t[s * rounds + r] = run(argv[s + 2], &failed[s]);
    for (int s = 0; s < specs; s++) {
        qsort(t + s * rounds, rounds, sizeof *t, cmp);
        printf("%d %.0f %.0f %d\n", s, t[s * rounds + rounds / 2], t[s * rounds + (rounds * 95) / 100], failed[s]);
    }
    return 0;
}
"""
FLAVOR_IMAGES = {"minideb": "org/base-gosu:minideb-trixie-amd64", "ubuntu": "org/base-gosu:ubuntu-24.04-amd64",
                 "alpine": "org/base-gosu:alpine-3.20-amd64"}
# (scenario, baseline spec, entrypoint spec with {ep} for its path); the first remap alternates ids.
SCENARIOS = [
    ("nothing to change", "gosu ops true", "{ep} true"),
    ("first remap", "gosu ops true", "USER_ID={uid} {ep} true"),
    ("restart after remap", "gosu ops true", "USER_ID=1500 {ep} true"),
    ("arbitrary uid (4242:0)", "HOME=/ @4242:0 true", "HOME=/ @4242:0 {ep} true"),
]


# What a shell entrypoint pays whatever else it does: starting the shell; handing stdio to the app (a start's
# pipes are new and root's, and /dev/stdout must open for the app: one fork every start needs); reading the
# workdir's owner as well.
FLOORS = {"floor: sh, exec gosu": '#!/bin/sh\nexec gosu ops "$@"\n',
          "floor: sh, chown, exec gosu": '#!/bin/sh\nchown 10001:10001 /proc/$$/fd/1 /proc/$$/fd/2\n'
                                         'exec gosu ops "$@"\n',
          "floor: sh, stat, chown, exec gosu": '#!/bin/sh\nx=$(stat -L -c "%u %g %a" /app)\n'
                                               'chown 10001:10001 /proc/$$/fd/1 /proc/$$/fd/2\nexec gosu ops "$@"\n'}
FLOOR_FILES = [f"floor{i}" for i in range(len(FLOORS))]


def before_split(rev: str) -> str:
    """The entrypoint of `rev`, or by default the one just before the split into several files."""
    if not rev:
        split = subprocess.run(["git", "-C", str(ROOT), "log", "--format=%H", "--diff-filter=A", "--",
                                "images/entrypoint-changes.sh"], capture_output=True, text=True).stdout.split()
        rev = f"{split[-1]}^" if split else "HEAD"
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:images/entrypoint.sh"], check=True,
                          capture_output=True, text=True).stdout


def timer_binary(d: str) -> str:
    Path(d, "timer.c").write_text(TIMER_C)
    subprocess.run(["gcc", "-O2", "-static", "-o", f"{d}/timer", f"{d}/timer.c"], check=True)
    return f"{d}/timer"


def in_container(image: str, old: str, timer: str, runs: int) -> list[tuple[str, list[tuple[int, int, int]]]]:
    """Per scenario: (p50, p95, failed runs) of the baseline, the old entrypoint and the current one."""
    name = f"bench-ep-{os.urandom(4).hex()}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep", image,
                    "infinity"], check=True, capture_output=True)
    try:
        with tempfile.TemporaryDirectory() as d:
            Path(d, "old").write_text(old)
            shutil.copy(ROOT / "images" / "entrypoint.sh", Path(d, "new"))
            for i, script in enumerate(FLOORS.values()):
                Path(d, f"floor{i}").write_text(script)
            for f in ("old", "new", *FLOOR_FILES):
                os.chmod(Path(d, f), 0o755)
            subprocess.run(["docker", "exec", name, "mkdir", "-p", "/bench", "/usr/local/lib/base-gosu"], check=True)
            for src, dst in [(timer, "/bench/timer"), *((f"{d}/{f}", f"/bench/{f}") for f in
                                                         ("old", "new", *FLOOR_FILES)),
                             *((str(p), f"/usr/local/lib/base-gosu/{p.name}")
                               for p in (ROOT / "images").glob("entrypoint-*.sh"))]:
                subprocess.run(["docker", "cp", src, f"{name}:{dst}"], check=True, capture_output=True)
        out = []
        for scenario, base, ep in SCENARIOS:
            if scenario == "restart after remap":  # the remap done once, by the current entrypoint
                subprocess.run(["docker", "exec", "-e", "USER_ID=1500", name, "/bench/new", "true"], check=True)
            specs = [base, ep.format(ep="/bench/old", uid=1600), ep.format(ep="/bench/new", uid=1700)]
            floors = [f"/bench/{f} true" for f in FLOOR_FILES] if scenario == "nothing to change" else []
            lines = subprocess.run(["docker", "exec", name, "/bench/timer", str(runs), *specs, *floors], check=True,
                                   capture_output=True, text=True).stdout.split("\n")
            got = [tuple(map(int, line.split()[1:])) for line in lines if line]
            out.append((scenario, got[:3]))
            out.extend((floor, [got[0], None, t]) for floor, t in zip(FLOORS, got[3:]))
        return out
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def main_in_container(flavors: list[str], runs: int, before: str) -> None:
    old = before_split(before)
    with tempfile.TemporaryDirectory() as d:
        timer = timer_binary(d)
        table = io.StringIO()
        print(f"{'flavor':8} {'scenario':34} {'baseline p50/p95 ms':>20} {'before p50/p95 ms':>18} {'ratio':>6} "
              f"{'after p50/p95 ms':>17} {'ratio':>6}  goal", file=table)
        for flavor in flavors:
            for scenario, ((b50, b95, bf), old_t, (n50, n95, nf)) in in_container(
                    FLAVOR_IMAGES[flavor], old, timer, runs):
                goal = {"nothing to change": "1.5", "restart after remap": "1.5"}.get(scenario, "")
                o50, o95, of = old_t or (0, 0, 0)
                was = f"{o50 / 1000:8.2f}/{o95 / 1000:<8.2f} {o50 / b50:6.2f}" if old_t else f"{'-':>25}"
                failed = f"  ({bf}/{of}/{nf} runs failed)" if bf or of or nf else ""
                print(f"{flavor:8} {scenario:34} {b50 / 1000:9.2f}/{b95 / 1000:<9.2f} {was} "
                      f"{n50 / 1000:8.2f}/{n95 / 1000:<7.2f} {n50 / b50:6.2f}  {goal}{failed}", file=table)
    print(f"p50 and p95 over {runs} interleaved runs each; ratio: p50 over the baseline's p50; before: "
          f"the entrypoint of {before or 'the commit before the split'}")
    print(table.getvalue(), end="")


def main() -> None:
    global IMAGE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--image", default=IMAGE, help=f"a minideb image of this project (default {IMAGE})")
    ap.add_argument("--in-container", action="store_true", help="the start-up budget inside running containers")
    ap.add_argument("--runs", type=int, default=150, help="--in-container: runs of each command")
    ap.add_argument("--flavor", action="append", choices=sorted(FLAVOR_IMAGES),
                    help="--in-container: flavors to measure (default all)")
    ap.add_argument("--before", default="", help="--in-container: the revision whose entrypoint is 'before'")
    a = ap.parse_args()
    if a.in_container:
        main_in_container(a.flavor or ["minideb", "ubuntu", "alpine"], a.runs, a.before)
        return
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
