"""Running the smoke checks of many images at once, bounded by `smoke.jobs`, with the output in a stable order.

Starting a container is mostly waiting on the daemon and the kernel (and on
qemu for a foreign arch), so several checks run at a time, across checks and
images alike. A check marked `alone` (its verdict depends on timing, or it
changes what other checks share) runs first, one at a time, with nothing
else running. A check marked `arch_independent` runs on one image of each
family and word size, the others' lines naming the image whose run stands
for theirs (`plan`). Each image's lines are printed, in check order, once
that image and every image before it are done; every failure is kept and
returned, none stops the others.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from builder.core import arches, emulation
from builder.core.engine import Engine, EngineError
from builder.smoke.checks.kit import Ctx, Shared, SmokeFailure, Subject

Check = Callable[[Ctx], None]


@dataclass
class Result:
    name: str
    seconds: float
    failure: SmokeFailure | None = None
    # Not run on this image: the image whose run of the check stands for it, and that run's result.
    on: str = ""
    there: Result | None = None

    def line(self, image: str) -> str:
        if self.there is not None:
            verdict = "ok" if self.there.failure is None else "FAILED"
            return f"smoke {image} {self.name}: {verdict} on {self.on}, arch-independent ({self.seconds:.1f} s)"
        status = "ok" if self.failure is None else f"FAILED: {self.failure.saw}"
        return f"smoke {image} {self.name}: {status} ({self.seconds:.1f} s)"


@dataclass(frozen=True)
class Plan:
    """One run's checks: what runs by itself first, what runs together (in the order handed to the workers),
    and, for each (image, check) not run, the image whose run of that check stands for it."""
    alone: list[tuple[int, str]]
    together: list[tuple[int, str]]
    stands_for: dict[tuple[int, str], int]


def _word_size(subject: Subject) -> int:
    return arches.get(subject.arch, arches.IMAGE_ARCHES).elf_class


def representatives(subjects: list[Subject], host: str | None = None) -> list[int]:
    """For each image, the image whose runs of the arch_independent checks stand for its own: the first of
    its family and word size that the host runs without emulation, else the first of them. An image of no
    known family stands for itself."""
    emulated = set(emulation.foreign([s.arch for s in subjects], host))
    chosen: dict[tuple[str, int], int] = {}
    for i, s in enumerate(subjects):
        if not s.family:
            continue
        key = (s.family, _word_size(s))
        j = chosen.get(key)
        if j is None or (subjects[j].arch in emulated and s.arch not in emulated):
            chosen[key] = i
    return [chosen.get((s.family, _word_size(s)), i) if s.family else i for i, s in enumerate(subjects)]


def plan(subjects: list[Subject], checks: dict[str, Check], host: str | None = None) -> Plan:
    reps = representatives(subjects, host)
    stands_for = {(i, n): reps[i] for n, c in checks.items() if getattr(c, "arch_independent", False)
                  for i in range(len(subjects)) if reps[i] != i}
    alone = [(i, n) for i in range(len(subjects)) for n, c in checks.items()
             if getattr(c, "alone", False) and (i, n) not in stands_for]
    together = [(i, n) for n in _order(checks) for i in range(len(subjects)) if (i, n) not in stands_for]
    return Plan(alone, together, stands_for)


def run_check(engine: Engine, subject: Subject, name: str, check: Check, shared: Shared | None = None) -> Result:
    start = time.monotonic()
    try:
        check(Ctx(engine, subject, shared or Shared()))
        failure = None
    except SmokeFailure as f:
        failure = f
    except EngineError as e:
        # An image that cannot even start (wrong arch, broken emulation) fails the check like any other, so
        # every failure is reported together.
        failure = SmokeFailure(subject.image, name, str(e))
    except Exception as e:  # a check that breaks is a failure to report with the others, not a lost line
        failure = SmokeFailure(subject.image, name, f"{type(e).__name__}: {e}")
    return Result(name, time.monotonic() - start, failure)


@dataclass
class _Printer:
    """Prints each image's lines in check order once it and every image before it are complete."""
    subjects: list[Subject]
    checks: list[str]
    log: object
    results: list[dict[str, Result]] = field(default_factory=list)
    printed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.results = [{} for _ in self.subjects]

    def done(self, index: int, result: Result) -> None:
        with self.lock:
            self.results[index][result.name] = result
            while self.printed < len(self.subjects) and len(self.results[self.printed]) == len(self.checks):
                if self.log:
                    image = self.subjects[self.printed].image
                    for name in self.checks:
                        self.log.write(self.results[self.printed][name].line(image) + "\n")
                    self.log.flush()
                self.printed += 1


def run_many(engine: Engine, subjects: list[Subject], checks: dict[str, Check], jobs: int, log=None
             ) -> list[SmokeFailure]:
    """Every check on every subject; at most `jobs` at once (alone checks first, each by itself).

    Every container and volume the checks make carries this run's label, and all are removed at the end,
    however the run ends (a check timing out, Ctrl-C); two runs on one engine never touch each other's.
    """
    if engine is not None:
        engine = dataclasses.replace(engine, label=f"org.base-gosu.smoke-run={uuid.uuid4().hex[:16]}")
    try:
        return _run_many(engine, subjects, checks, jobs, log)
    finally:
        if engine is not None:
            engine.sweep()


def _order(checks: dict[str, Check]) -> list[str]:
    """The checks that run together, in the order they are handed to the workers: check by check across the
    images (not image by image), the first check reading each shared start first (it makes that start), the
    other shared_only checks last."""
    names = [n for n, c in checks.items() if not getattr(c, "alone", False)]
    shared = [n for n in names if getattr(checks[n], "shared_only", "")]
    makers, starts = [], set()
    for n in shared:
        if checks[n].shared_only not in starts:
            starts.add(checks[n].shared_only)
            makers.append(n)
    return makers + [n for n in names if n not in shared] + [n for n in shared if n not in makers]


def _run_many(engine, subjects: list[Subject], checks: dict[str, Check], jobs: int, log) -> list[SmokeFailure]:
    printer, shared, p = _Printer(subjects, list(checks), log), Shared(), plan(subjects, checks)
    results: dict[tuple[int, str], Result] = {}

    def done(i: int, result: Result) -> None:
        results[(i, result.name)] = result
        printer.done(i, result)

    for i, name in p.alone:
        done(i, run_check(engine, subjects[i], name, checks[name], shared))
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="smoke")
    try:
        futures = {pool.submit(run_check, engine, subjects[i], name, checks[name], shared): i
                   for i, name in p.together}
        for future in futures:
            future.add_done_callback(lambda f, i=futures[future]: done(i, f.result()))
        wait(futures)
    finally:
        # Ctrl-C: nothing new starts; checks under way end with their containers (--rm, named ones removed).
        pool.shutdown(wait=True, cancel_futures=True)
    for (i, name), j in p.stands_for.items():
        if (there := results.get((j, name))) is not None:
            printer.done(i, Result(name, 0.0, on=subjects[j].image, there=there))
    return [r.failure for per in printer.results for name in checks if (r := per.get(name)) and r.failure]
