"""A run's images shipped to a registry, one way: publish, and its two halves push and assemble.

publish goes plan -> guards -> tags read -> build -> smoke -> push -> one
record per image -> seal -> indexes -> tags; `invoke push` (one machine per
arch) stops after the seal and writes the records, `invoke assemble` (one
machine) takes them up from there. Each entry plans once (pipeline.plan),
checks each guard once on the records (trial, end of life, vulnerable gosu,
signing identity, shrink), reads each release's tags once and seals each
image once; only what the registry does not already serve with the same
inputs is built, smoke-tested and pushed, by digest, before any index is
written or tag moved.

What reaches the registry is the publisher's (ko's model): `ToRegistry`
writes; `DryRun` writes nothing and prints what would be done instead. A dry
run takes the same steps, so it plans, guards and reads as the publish would.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TextIO

from builder import pipeline
from builder.core.engine import Engine
from builder.core.registry import Registry
from builder.image.plan import ImagePlan
from builder.pipeline import Request, RunPlan
from builder.publish import attest as statements, push as pub, signing, tags


@dataclass(frozen=True)
class PublishOptions:
    """How a publish, push or assemble goes: the guards waived on purpose, who signs, whether anything is
    written."""
    allow_shrink: bool = False      # a tag may lose platforms it serves now
    allow_trial: bool = False       # trial images may leave for a registry other than the local one,
    allow_eol: bool = False         # so may images whose base release is past its end of life,
    allow_vulnerable: bool = False  # and images whose gosu has a finding that applies
    dry_run: bool = False           # print what would be done; write nothing
    signer: signing.Signer | None = None  # None: nothing is signed


@dataclass(frozen=True)
class Survey:
    """What a publish starts from, read before anything is built: the run's plan, each flavor release's tags
    (by flavor-release) as read once, and one record per image in the plan's order: the image the registry
    already serves with the same inputs, else the planned one (not in the registry yet)."""
    run: RunPlan
    states: dict[str, dict[str, tags.TagState]]
    records: tuple[pub.Child, ...]

    def todo(self) -> set[str]:
        """The images to build, smoke-test and push, by name."""
        return {p.name for p, r in zip(self.run.images, self.records) if not r.in_registry}


class Publisher(Protocol):
    """What a publish does to the registry, step by step; each entry takes the steps in this order."""
    registry: Registry
    dest: pub.Destination
    log: TextIO

    def ready(self) -> None:
        """Before anything is sent: the signing identity works."""

    def push(self, req: Request, engine: Engine, survey: Survey) -> tuple[list[pub.Child], signing.Documents]:
        """The records of every image once what the registry lacks is there, and the documents to attest."""

    def received(self, children: list[pub.Child]) -> None:
        """Records another machine pushed (assemble) name images in the registry."""

    def seal(self, children: list[pub.Child], documents: signing.Documents) -> frozenset[str]:
        """Each child signed and attested by digest; returns the repository's tags as read before."""

    def tag(self, layouts: list[tags.Layout], children: list[pub.Child], present: frozenset[str]) -> tags.Report:
        """The indexes written and signed, the tags moved."""

    def summarize(self, report: tags.Report, seconds: float) -> None:
        """publish's last line."""


@dataclass(frozen=True)
class ToRegistry:
    """The publisher that writes: pushes by digest, signs, writes indexes, moves tags."""
    registry: Registry
    dest: pub.Destination
    log: TextIO
    signer: signing.Signer | None = None

    def ready(self) -> None:
        if self.signer:
            self.signer.preflight()

    def push(self, req: Request, engine: Engine, survey: Survey) -> tuple[list[pub.Child], signing.Documents]:
        for r in survey.records:
            if r.in_registry:
                self.log.write(f"push: {r.key}-{r.arch}: registry already serves inputs {r.inputs[:19]} "
                               f"({r.digest[:19]}); not rebuilt, nothing uploaded\n")
        todo = survey.todo()
        pushed: dict[str, tuple[pub.Child, dict[str, dict]]] = {}
        if todo:
            built = pipeline.build(req, engine, self.log, survey.run.only(todo))
            pushed = {b.plan.name: pub.push_child(self.registry, self.dest, b, self.log, req.clients)
                      for b in pipeline.smoke(req, engine, built, self.log)}
        records = [pushed[p.name][0] if p.name in pushed else r for p, r in zip(survey.run.images, survey.records)]
        return records, statements.documents_for({child.digest: docs for child, docs in pushed.values()})

    def received(self, children: list[pub.Child]) -> None:
        tags.check_present(self.registry, self.dest, children)

    def seal(self, children: list[pub.Child], documents: signing.Documents) -> frozenset[str]:
        if not self.signer or not children:
            return frozenset()
        present = signing.present_tags(self.registry, self.dest.repository)
        for c in children:
            signing.seal(self.signer, self.registry, self.dest, c.digest, documents, self.log, present)
        return present

    def tag(self, layouts: list[tags.Layout], children: list[pub.Child], present: frozenset[str]) -> tags.Report:
        # Indexes carry no documents of their own: they are signed, not attested.
        seal = partial(signing.seal, self.signer, self.registry, self.dest, documents=None, log=self.log,
                       present=present) if self.signer else None
        moved = tags.apply(self.registry, self.dest, layouts, self.log, seal)
        return tags.Report(layouts, children, moved, self.registry.bytes_uploaded)

    def summarize(self, report: tags.Report, seconds: float) -> None:
        summary = "nothing changed, zero bytes pushed" if report.noop else \
            f"{len(report.moved)} tag(s) moved, {report.bytes_uploaded} bytes uploaded"
        self.log.write(f"publish: {self.dest.registry}/{self.dest.repository}: {summary} ({seconds:.1f} s)\n")


@dataclass(frozen=True)
class DryRun:
    """The publisher that writes nothing: what would be pushed stays a planned record, nothing is signed,
    and the layouts are printed (`header`, then tags.describe) instead of applied."""
    registry: Registry
    dest: pub.Destination
    log: TextIO
    header: str

    def ready(self) -> None:
        pass  # nothing would be signed: the identity is not tried

    def push(self, req: Request, engine: Engine, survey: Survey) -> tuple[list[pub.Child], signing.Documents]:
        return list(survey.records), statements.documents_for({})

    def received(self, children: list[pub.Child]) -> None:
        pass

    def seal(self, children: list[pub.Child], documents: signing.Documents) -> frozenset[str]:
        return frozenset()

    def tag(self, layouts: list[tags.Layout], children: list[pub.Child], present: frozenset[str]) -> tags.Report:
        self.log.write(f"{self.header}:\n" + "\n".join(tags.describe(layouts, self.dest)) + "\n")
        return tags.Report(layouts, children)

    def summarize(self, report: tags.Report, seconds: float) -> None:
        pass  # the plan printed is the summary


def publisher_for(registry: Registry, dest: pub.Destination, options: PublishOptions, log: TextIO,
                  verb: str, unwritten: str) -> Publisher:
    """The publisher `options` ask for; a dry run heads what it would do with `<verb> plan for <where> (dry run:
    <unwritten>):`."""
    if options.dry_run:
        return DryRun(registry, dest, log,
                      f"{verb} plan for {dest.registry}/{dest.repository} (dry run: {unwritten})")
    return ToRegistry(registry, dest, log, options.signer)


def guard(children: list[pub.Child], dest: pub.Destination, options: PublishOptions, today: dt.date) -> None:
    """The guards on the records, each checked once before a byte is sent: trial, end of life, vulnerable gosu."""
    named = [(f"{dest.repository}:{c.key}-{c.arch}", c) for c in children]
    pub.check_trial([(name, c.trial) for name, c in named], dest, options.allow_trial)
    pub.check_eol([(name, c.eol) for name, c in named], dest, options.allow_eol, today)
    pub.check_vulnerable([(name, c.applying) for name, c in named], dest, options.allow_vulnerable)


def survey(req: Request, publisher: Publisher, options: PublishOptions, reads: dict | None = None,
           moves_tags: bool = True) -> Survey:
    """Plan once, check the guards once on the planned records (and the signing identity), read each release's
    tags once and, where this run moves them, hold them to their platforms; take up each image the registry
    already serves."""
    run = pipeline.plan(req, publisher.log, reads)
    planned = [pub.record(p) for p in run.images]
    guard(planned, publisher.dest, options, req.today)
    publisher.ready()
    groups = pub.check_children(planned)
    states = tags.read_states(publisher.registry, publisher.dest.repository, groups)
    if moves_tags:
        tags.check_shrink_all(states, groups, options.allow_shrink)
    return Survey(run, states, tuple(served(p, r, states[r.key]) for p, r in zip(run.images, planned)))


def served(plan: ImagePlan, planned: pub.Child, states: dict[str, tags.TagState]) -> pub.Child:
    """The record of the image one of its release's tags already serves with the same inputs, else `planned`."""
    existing = tags.reusable(states, planned.platform_key, plan.inputs)
    return pub.record(plan, existing) if existing else planned


def push(req: Request, engine: Engine, registry: Registry, dest: pub.Destination, log=sys.stderr,
         options: PublishOptions = PublishOptions(), reads: dict | None = None) -> list[pub.Child]:
    """Build and smoke-test what the registry lacks, then push each by digest; no tag is created or moved.

    An image whose inputs digest the registry already serves is neither built
    nor pushed: a nightly run with nothing new costs a few registry reads.
    With a signer, each image is signed and attested by digest once pushed
    (one already signed is left as it is). `reads`: pipeline.plan's.
    """
    publisher = publisher_for(registry, dest, options, log, "push", "nothing is built or pushed")
    # A push moves no tag, so it cannot shrink one: the nightly's jobs each push one arch of a release whose tags
    # serve several, and assemble, which has every job's record, holds the tags to their platforms.
    records, documents = publisher.push(req, engine, survey(req, publisher, options, reads, moves_tags=False))
    publisher.seal(records, documents)
    return records


def publish(req: Request, engine: Engine, registry: Registry, dest: pub.Destination, log=sys.stderr,
            options: PublishOptions = PublishOptions(), reads: dict | None = None) -> tags.Report:
    """build -> smoke -> push every arch by digest (signed, attested) -> one index per flavor release (signed)
    -> move tags, in that order; with options.dry_run, the same steps print what they would do instead.
    Planned once: the guards and the tags read here are not checked or read again. `reads`: pipeline.plan's."""
    start = time.monotonic()
    publisher = publisher_for(registry, dest, options, log, "publish", "nothing is built, pushed or tagged")
    s = survey(req, publisher, options, reads)
    records, documents = publisher.push(req, engine, s)
    present = publisher.seal(records, documents)
    report = publisher.tag(tags.layout(records, s.states), records, present)
    publisher.summarize(report, time.monotonic() - start)
    return report


def assemble(children: list[pub.Child], registry: Registry, dest: pub.Destination,
             expected: list[tuple[str, str, str]] | None, log=sys.stderr, options: PublishOptions = PublishOptions(),
             today: dt.date | None = None) -> tags.Report:
    """Indexes and tags from push records made on other machines (the split publish's second half).

    With a signer, every child under a tag that moves must be (or is now)
    signed and attested, and every index is signed by digest, before any tag
    moves to it. `today`: the day the end-of-life guard goes by.
    """
    publisher = publisher_for(registry, dest, options, log, "assemble", "nothing is written")
    guard(children, dest, options, today or dt.date.today())
    publisher.ready()
    groups = pub.check_children(children, expected)
    states = tags.read_states(registry, dest.repository, groups)
    tags.check_shrink_all(states, groups, options.allow_shrink)
    layouts = tags.layout(children, states)
    handed = [c for lay in layouts if lay.changes for c in lay.children]
    publisher.received(handed)
    present = publisher.seal(handed, statements.documents_for({}))
    return publisher.tag(layouts, children, present)
