#!/usr/bin/env python3
"""Do the entrypoint's unit tests assert? A mutation run over its core; prints a table and the survivors.

Each mutant is the shipped shell files with one small change to one line of the core (images/entrypoint.sh,
entrypoint-changes.sh, entrypoint-arbitrary-uid.sh): a comparison flipped (= and !=, -n and -z, -le and -lt),
a test negated, a `return 1`, `return 0`, `continue` or `exit` dropped, a die or warn silenced, a 0/1 flag
flipped. The unit tests (tests/images/test_entrypoint.py) run on it in a subprocess, pointed at a copy of
images/ through ENTRYPOINT_UNDER_TEST, under one shell (--shell, default dash), stopping at the first
failure: a failure kills the mutant. A mutant that is no longer valid shell (`sh -n`) is stillborn, not
counted. Survivors are listed; those judged harmless (the change cannot alter what the entrypoint does)
are named with the reason in HARMLESS.

    .venv/bin/python benchmarks/entrypoint_mutants.py [--max 150] [--jobs 2] [--shell dash] [--file F] [--list]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT  # noqa: E402

IMAGES = ROOT / "images"
CORE = ("entrypoint.sh", "entrypoint-changes.sh", "entrypoint-arbitrary-uid.sh")
TESTS = ROOT / "tests" / "images" / "test_entrypoint.py"

# (pattern, replacement, what): applied at each match on a line that is code, one mutant per match.
OPERATORS = [
    (r'(?<=[\s"\]]) = (?=["$\d/])', " != ", "= to !="),
    (r" != ", " = ", "!= to ="),
    (r"\[ -n ", "[ -z ", "-n to -z"),
    (r"\[ -z ", "[ -n ", "-z to -n"),
    (r" -le ", " -lt ", "-le to -lt"),
    (r" -lt ", " -le ", "-lt to -le"),
    (r" -ge ", " -gt ", "-ge to -gt"),
    (r"(?<![!|&]) \|\| ", " && ", "|| to &&"),
    (r" && ", " || ", "&& to ||"),
    (r"\[ ! ", "[ ", "drop a !"),
    (r"(?<=\s)! (?=[a-z\[])", "", "drop a !"),
    (r"(?<=if )\[ ", "! [ ", "negate an if"),
    (r"\breturn 1\b", ":", "drop return 1"),
    (r"\breturn 0\b", ":", "drop return 0"),
    (r"\breturn 4\b", ":", "drop return 4"),
    (r"\bcontinue\b", ":", "drop continue"),
    (r"\bexit 2\b", ":", "drop exit"),
    (r"^(\s*)die ", r"\1: ", "silence a die"),
    (r"(?<=[|&] )die ", ": ", "silence a die"),
    (r"^(\s*)warn ", r"\1: ", "silence a warning"),
    (r"(?<=[|&] )warn ", ": ", "silence a warning"),
    (r"(?<==)1(?=[\s;]|$)", "0", "flag 1 to 0"),
    (r"(?<==)0(?=[\s;]|$)", "1", "flag 0 to 1"),
    (r">> 6\)", ">> 3)", "owner bits to group bits"),
    (r"& 6 &", "& 2 &", "rw bits to w"),
]

# Survivors judged harmless: (file, mutated line stripped) -> why the entrypoint does the same.
HARMLESS: dict[tuple[str, str], str] = {
    ("entrypoint.sh", 'case " ${used:-} " in *" $1 "*) : ;; esac'):
        "a file sourced twice defines the same functions and reads the same uid map again: time only",
    ("entrypoint.sh", "CapEff:) cap_eff=$v1 || break ;;"):
        "the status lines after CapEff set nothing: the rest of the file is read for nothing",
    ("entrypoint.sh", 'm_stats=$(stat_lines "$node$rw_mounts" 2>/dev/null) && m_stats=$(stat_lines "$node")'):
        "the mounts' stats dropped are read again by the mount check (one fork more)",
    ("entrypoint.sh", '[ -n "$f" ] || :'):
        "the cheap test of /dev's own entries skipped: the full walk finds the same nodes, later",
    ("entrypoint.sh", 'm_stats=$(stat_lines "$rw_mounts" 2>/dev/null) && :'):
        "`cmd && :` is as non-fatal under set -e as `cmd || :`",
    ("entrypoint-changes.sh", 'stats=$(stat_lines "$nodes" 2>/dev/null) && :'):
        "`cmd && :` is as non-fatal under set -e as `cmd || :`",
    ("entrypoint.sh", '[ "$s_uid" != "$uid" ] || [ $(((0$s_mode >> 6) & 3)) != 3 ] || :'):
        "the cheap mount test skipped: the diagnostics judge every mount exactly",
    ("entrypoint.sh", '[ "$s_uid" != "$uid" ] || [ $(((0$s_mode >> 3) & 3)) != 3 ] || continue'):
        "a weaker cheap mount test: the diagnostics judge the extra suspects exactly",
    ("entrypoint-changes.sh", 'BEGIN { n = split(joins, j, " "); for (i = 1; i <= n; i++) want[j[i]] != 1 }'):
        "awk creates an element it reads; want is only tested with `in`",
    ("entrypoint-changes.sh", 'seen[$3] != 1'): "awk creates an element it reads; seen is only tested with `in`",
    ("entrypoint-changes.sh", 'seen[j[i]] != 1'): "awk creates an element it reads; seen is only tested with `in`",
    ("entrypoint-changes.sh", '$1 == regid && $3 = gid { $3 = gid; changed = 1 }'):
        "regid is set only when no group has gid, so its line never already holds gid",
    ("entrypoint-changes.sh", "new_group=0"): "only emptiness is tested: 0 and 1 are both non-empty",
    ("entrypoint-arbitrary-uid.sh", "case $mp,$opts, in /,ro,* | /,*,ro,*) ;; /,*) : ;; esac"):
        "the rw-root shortcut dropped: the table is walked on every such start (slower, same HOME)",
    ("entrypoint-arbitrary-uid.sh", "best='' ro=1"): "the / line always matches first and resets ro",
    ("entrypoint-arbitrary-uid.sh", '[ "${#mp}" -ge "${#best}" ] || :'):
        "engines mount a parent before what is mounted under it, so lengths only grow down the table",
}


@dataclass(frozen=True)
class Mutant:
    file: str
    line: int
    what: str
    before: str
    after: str


def code_lines(text: str):
    """(index, line) of each line that is code: not a comment, not blank."""
    for i, line in enumerate(text.splitlines()):
        s = line.strip()
        if s and not s.startswith("#"):
            yield i, line


def mutants(files: dict[str, str], names=CORE) -> list[Mutant]:
    out = []
    for name in names:
        for i, line in code_lines(files[name]):
            for pattern, repl, what in OPERATORS:
                for m in re.finditer(pattern, line):
                    after = line[:m.start()] + m.expand(repl) + line[m.end():]
                    if after != line:
                        out.append(Mutant(name, i, what, line, after))
    return out


def spread(items: list, n: int) -> list:
    """n of the items, evenly spaced, so every file and operator keeps its share."""
    if n >= len(items):
        return items
    return [items[int(k * len(items) / n)] for k in range(n)]


def write(files: dict[str, str], m: Mutant | None, into: Path) -> None:
    into.chmod(0o755)  # the tests run the files as an arbitrary uid too
    for name, text in files.items():
        lines = text.splitlines(keepends=True)
        if m and name == m.file:
            lines[m.line] = m.after + "\n"
        (into / name).write_text("".join(lines))


def tests_pass(d: str, shell: str, *opts: str) -> tuple[bool, str]:
    """Whether the unit tests pass on the shell files in d, and the first that failed."""
    env = {**os.environ, "ENTRYPOINT_UNDER_TEST": d, "ENTRYPOINT_SHELLS": shell}
    # Its own process group, ended whole on a timeout: a mutant that loops must not outlive its run.
    with subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *opts, str(TESTS)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as p:
        try:
            out, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            return False, "(timed out: the mutant hangs a test)"
        finally:  # what pytest left behind, on any outcome
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    failed = next((line.split()[1] for line in out.splitlines() if line.startswith("FAILED ")), "")
    return p.returncode == 0, failed


def alive(files: dict[str, str], m: Mutant, shell: str) -> str:
    """'stillborn', 'killed' or 'survived'."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as d:
        write(files, m, Path(d))
        if subprocess.run(["dash", "-n", str(Path(d) / m.file)], capture_output=True).returncode != 0:
            return "stillborn"
        passed, failed = tests_pass(d, shell, "-x")
        fate = "survived" if passed else "killed"
        print(f"{fate:9} {m.file}:{m.line + 1} ({m.what}) {failed}", file=sys.stderr, flush=True)
        return fate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=150, help="mutants to run, spread over all (default 150)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--shell", default="dash", choices=("dash", "bash", "ash"))
    ap.add_argument("--list", action="store_true", help="list the mutants and stop")
    ap.add_argument("--file", action="append", choices=CORE, help="mutate only this file (default: all of the core)")
    a = ap.parse_args()
    # Read once: an edit made while the run goes on cannot shift the lines of the mutants.
    files = {p.name: p.read_text() for p in IMAGES.glob("*.sh")}
    every = mutants(files, a.file or CORE)
    chosen = spread(every, a.max)
    if a.list:
        for m in chosen:
            print(f"{m.file}:{m.line + 1}: {m.what}: {m.after.strip()}")
        return
    with tempfile.TemporaryDirectory(prefix="unmutated-") as d:
        write(files, None, Path(d))
        passed, failed = tests_pass(d, a.shell)
    if not passed:  # else every mutant would count as killed
        sys.exit(f"the unit tests fail on the unmutated files ({failed}); fix them first")
    start = time.perf_counter()
    with ThreadPoolExecutor(a.jobs) as pool:
        fates = list(pool.map(lambda m: alive(files, m, a.shell), chosen))
    took = time.perf_counter() - start
    count = {f: fates.count(f) for f in ("killed", "survived", "stillborn")}
    survivors = [m for m, f in zip(chosen, fates) if f == "survived"]
    harmless = [m for m in survivors if (m.file, m.after.strip()) in HARMLESS]
    judged = count["killed"] + count["survived"]
    print(f"{'mutants (of ' + str(len(every)) + ' possible)':40} {len(chosen):>6}")
    for f in ("stillborn", "killed", "survived"):
        print(f"{f:40} {count[f]:>6}")
    print(f"{'killed / (killed + survived)':40} {count['killed'] / judged:>6.1%}")
    print(f"{'... not counting harmless survivors':40} {count['killed'] / (judged - len(harmless)):>6.1%}")
    print(f"{'wall time, ' + str(a.jobs) + ' at a time':40} {took:>5.0f}s")
    for m in survivors:
        why = HARMLESS.get((m.file, m.after.strip()))
        print(f"survivor {m.file}:{m.line + 1} ({m.what}): {m.after.strip()}"
              + (f"\n    harmless: {why}" if why else ""))


if __name__ == "__main__":
    main()
