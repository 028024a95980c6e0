"""The smoke scheduler: bounded concurrency, alone checks by themselves, stable output, every failure kept."""

from __future__ import annotations

import dataclasses
import io
import threading
import time

import pytest

from builder import pipeline
from builder.smoke import schedule
from builder.smoke.checks import kit
from builder.smoke.checks.kit import Subject
from tests.support.engine import rig  # noqa: F401 - fixture


def subjects(n: int) -> list[Subject]:
    return [Subject(f"org/base-gosu:img{i}", "amd64", "linux/amd64", "1.19", "0" * 64) for i in range(n)]


class Meter:
    """Counts the checks running at once, and what ran beside an alone check."""
    def __init__(self):
        self.lock, self.now, self.most, self.beside_alone = threading.Lock(), 0, 0, []

    def check(self, seconds: float, fail_on: str = "", alone: bool = False):
        def run(c):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
                if alone and self.now > 1:
                    self.beside_alone.append(self.now)
            time.sleep(seconds)
            with self.lock:
                self.now -= 1
            if c.s.image.endswith(fail_on) and fail_on:
                c.fail("probe", f"{c.s.image} is wrong")
        return kit.alone(run) if alone else run


def test_at_most_jobs_at_once_and_alone_checks_by_themselves():
    m = Meter()
    checks = {"a": m.check(0.05), "b": m.check(0.02), "timing": m.check(0.03, alone=True), "c": m.check(0.04)}
    failures = schedule.run_many(None, subjects(5), checks, jobs=3)
    assert failures == []
    assert m.most == 3, "bounded by jobs, and the pool was used"
    assert m.beside_alone == [], "nothing ran beside an alone check"


def test_lines_come_per_image_in_check_order_and_every_failure_is_kept():
    m = Meter()
    log = io.StringIO()
    # Later checks finish first: the order printed must still be the checks' order, image by image.
    checks = {"slow": m.check(0.08, fail_on="img1"), "mid": m.check(0.04), "fast": m.check(0.0, fail_on="img3")}
    failures = schedule.run_many(None, subjects(4), checks, jobs=4, log=log)
    lines = log.getvalue().splitlines()
    assert [l.split(": ")[0] for l in lines] == [f"smoke org/base-gosu:img{i} {n}" for i in range(4)
                                                for n in ("slow", "mid", "fast")]
    assert [(f.image, f.check) for f in failures] == [("org/base-gosu:img1", "probe"), ("org/base-gosu:img3", "probe")]
    assert "FAILED: org/base-gosu:img1 is wrong" in lines[3]


def test_a_check_that_breaks_is_reported_not_lost():
    def broken(c):
        raise KeyError("no such field")
    failures = schedule.run_many(None, subjects(2), {"broken": broken, "fine": lambda c: None}, jobs=2)
    assert [f.saw for f in failures] == ["KeyError: 'no such field'"] * 2


def test_one_job_is_one_after_another():
    m = Meter()
    schedule.run_many(None, subjects(3), {"a": m.check(0.01), "b": m.check(0.01)}, jobs=1)
    assert m.most == 1


@pytest.mark.engine
def test_what_checks_leave_behind_is_removed_when_the_run_ends(rig):
    """A check that times out leaves its `--rm` container running; one leaves a detached container and a
    volume: the run's label finds them all, and another run's containers are not touched."""
    subject = pipeline.subject_of(rig.built("alpine", "amd64"), by_id=True)
    other = dataclasses.replace(rig.engine, label="org.base-gosu.smoke-run=someone-else")
    bystander = other.run("run", "-d", "--network", "none", subject.runs, "sleep", "600").stdout.strip()
    seen = {}

    def times_out(c):
        c.engine.container(c.s.runs, "sleep", "600", timeout=3)

    def leaves_things(c):
        seen["label"] = c.engine.label
        c.engine.run("run", "-d", "--network", "none", c.s.runs, "sleep", "600")
        c.engine.run("volume", "create")

    try:
        failures = schedule.run_many(rig.engine, [subject], {"times_out": times_out, "leaves": leaves_things}, 2)
        assert [f.check for f in failures] == ["times_out"] and "did not finish in 3 s" in failures[0].saw
        label = seen["label"]
        assert rig.engine.run("ps", "-aq", "--filter", f"label={label}").stdout.split() == []
        assert rig.engine.run("volume", "ls", "-q", "--filter", f"label={label}").stdout.split() == []
        assert rig.engine.run("ps", "-q", "--filter", f"id={bystander}").stdout.strip(), "another run's stays"
    finally:
        other.sweep()


def test_what_checks_share_is_made_once_per_image_in_a_run():
    """Checks reading the same result (the probe container) wait for the first to make it, per image."""
    made, lock = [], threading.Lock()

    def make(c):
        with lock:
            made.append(c.s.image)
        time.sleep(0.05)
        return c.s.image

    def reads(c):
        if c.once("probe", lambda: make(c)) != c.s.image:
            c.fail("shared", "another image's result")
    failures = schedule.run_many(None, subjects(3), {"a": reads, "b": reads, "c": reads}, jobs=4)
    assert failures == [] and sorted(made) == [f"org/base-gosu:img{i}" for i in range(3)]


def test_a_shared_result_that_failed_fails_each_check_that_reads_it():
    calls = []

    def make(c):
        calls.append(1)
        c.fail("probe container", "exit 125")

    failures = schedule.run_many(None, subjects(1), {n: (lambda c: c.once("probe", lambda: make(c))) for n in "ab"},
                                 jobs=2)
    assert len(calls) == 1 and [(f.check, f.saw) for f in failures] == [("probe container", "exit 125")] * 2


def test_the_first_shared_only_check_goes_first_and_the_others_last():
    """With one image and two workers, the check that makes the shared start runs beside a check of its own,
    not beside another waiting on it."""
    began, lock = [], threading.Lock()

    def check(name, shared):
        def run(c):
            with lock:
                began.append(name)
            if shared:
                c.once("probe", lambda: time.sleep(0.1))
            else:
                time.sleep(0.02)
        return kit.shared_only("probe")(run) if shared else run
    checks = {"s1": check("s1", True), "own1": check("own1", False), "s2": check("s2", True),
              "own2": check("own2", False), "s3": check("s3", True)}
    log = io.StringIO()
    assert schedule.run_many(None, subjects(1), checks, jobs=2, log=log) == []
    assert set(began[:2]) == {"s1", "own1"} and began[2:] == ["own2", "s2", "s3"]
    assert [line.split()[2] for line in log.getvalue().splitlines()] == ["s1:", "own1:", "s2:", "own2:", "s3:"]


def test_each_shared_start_is_made_by_the_first_check_reading_it_which_goes_first():
    def reads(start):
        return kit.shared_only(start)(lambda c: None)
    checks = {"own1": lambda c: None, "a1": reads("a"), "b1": reads("b"), "a2": reads("a"), "own2": lambda c: None,
              "b2": reads("b")}
    assert schedule.plan(subjects(1), checks).together == [(0, n) for n in ("a1", "b1", "own1", "own2", "a2", "b2")]


def family(*specs: str) -> list[Subject]:
    """`minideb:arm64` -> an image of family minideb for arm64."""
    return [Subject(f"org/base-gosu:{s.replace(':', '-')}", s.split(":")[1], "", "1.19", "0" * 64,
                    family=s.split(":")[0]) for s in specs]


@pytest.mark.parametrize("images,host,want", [
    (("minideb:amd64", "minideb:arm64"), "amd64", [0, 0]),
    (("minideb:arm64", "minideb:amd64"), "amd64", [1, 1]),        # the native image, wherever it is listed
    (("minideb:arm64",), "amd64", [0]),                           # alone in its run: every check runs
    (("minideb:arm64", "ubuntu:amd64"), "amd64", [0, 1]),         # another family proves nothing for it
    (("alpine:amd64", "alpine:armhf", "alpine:i386", "alpine:arm64"), "amd64", [0, 2, 2, 0]),  # by word size
    (("alpine:armv7", "alpine:armhf"), "amd64", [0, 0]),          # both emulated: the first stands for both
    (("alpine:ppc64el", "alpine:s390x", "alpine:riscv64"), "amd64", [0, 0, 0]),
    (("minideb:amd64", "minideb:arm64"), "arm64", [1, 1]),        # on an arm64 host, arm64 is the native one
    (("minideb:amd64", ":arm64"), "amd64", [0, 1]),               # no family known: it stands for itself
])
def test_one_image_of_each_family_and_word_size_stands_for_the_others(images, host, want):
    assert schedule.representatives(family(*images), host) == want


def test_an_arch_independent_check_runs_on_the_native_image_and_its_verdict_stands_for_the_emulated():
    ran, lock = [], threading.Lock()

    def check(fail: bool):
        def run(c):
            with lock:
                ran.append(c.s.arch)
            if fail:
                c.fail("script", "refused nothing")
        return run
    images = family("minideb:arm64", "minideb:amd64")
    for fail in (False, True):
        ran.clear()
        log = io.StringIO()
        failures = schedule.run_many(None, images, {"per_arch": check(False),
                                                    "script": kit.arch_independent(check(fail))}, jobs=2, log=log)
        assert sorted(ran) == ["amd64", "amd64", "arm64"]
        assert [f.image for f in failures] == (["org/base-gosu:minideb-amd64"] if fail else [])
        verdict = "FAILED" if fail else "ok"
        assert log.getvalue().splitlines()[1] == \
            f"smoke org/base-gosu:minideb-arm64 script: {verdict} on org/base-gosu:minideb-amd64, arch-independent (0.0 s)"
