"""Running the smoke checks of many images at once, bounded by `smoke.jobs`, with the output in a stable order.

Starting a container is mostly waiting on the daemon and the kernel (and on
qemu for a foreign arch), so several checks run at a time, across checks and
images alike. A check marked `alone` (its verdict depends on timing, or it
changes what other checks share) runs first, one at a time, with nothing
else running. Each image's lines are printed, in check order, once that
image and every image before it are done; every failure is kept and
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

from builder.core.engine import Engine, EngineError
from builder.smoke.checks.kit import Ctx, Shared, SmokeFailure, Subject

Check = Callable[[Ctx], None]


@dataclass
class Result:
    name: str
    seconds: float
    failure: SmokeFailure | None = None

    def line(self, image: str) -> str:
        status = "ok" if self.failure is None else f"FAILED: {self.failure.saw}"
        return f"smoke {image} {self.name}: {status} ({self.seconds:.1f} s)"


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
    images (not image by image), the first shared_only check first (it makes each image's shared start), the
    other shared_only checks last."""
    names = [n for n, c in checks.items() if not getattr(c, "alone", False)]
    shared = [n for n in names if getattr(checks[n], "shared_only", False)]
    return shared[:1] + [n for n in names if n not in shared] + shared[1:]


def _run_many(engine, subjects: list[Subject], checks: dict[str, Check], jobs: int, log) -> list[SmokeFailure]:
    printer, shared = _Printer(subjects, list(checks), log), Shared()
    by_itself = [(i, n) for i in range(len(subjects)) for n, c in checks.items() if getattr(c, "alone", False)]
    together = [(i, n) for n in _order(checks) for i in range(len(subjects))]
    for i, name in by_itself:
        printer.done(i, run_check(engine, subjects[i], name, checks[name], shared))
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="smoke")
    try:
        futures = {pool.submit(run_check, engine, subjects[i], name, checks[name], shared): i
                   for i, name in together}
        for future in futures:
            future.add_done_callback(lambda f, i=futures[future]: printer.done(i, f.result()))
        wait(futures)
    finally:
        # Ctrl-C: nothing new starts; checks under way end with their containers (--rm, named ones removed).
        pool.shutdown(wait=True, cancel_futures=True)
    return [r.failure for per in printer.results for name in checks if (r := per.get(name)) and r.failure]
