"""A run's images shipped to a registry: publish, push, assemble and the dry run, over the one plan.

Each entry plans once (pipeline.plan), checks the guards once (trial, end of
life, vulnerable gosu, signing identity, shrink), reads each release's tags
once and seals (signs and attests) each image once; only what the registry
does not already serve with the same inputs is built, smoke-tested and
pushed, by digest, before any index is written or tag moved.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass
from functools import partial

from builder.core.engine import Engine
from builder.image.plan import ImagePlan
from builder.pipeline import Request, RunPlan, build, plan, smoke
from builder.publish import attest as statements, push as pub, signing, tags


@dataclass(frozen=True)
class Triage:
    """A publish's plan: the images, their flavors' tags as read once, and one record per image in the plan's
    order: the image the registry already serves with the same inputs, else the planned one (no digest yet)."""
    run: RunPlan
    states: dict[str, dict[str, tags.TagState]]   # flavor-release -> tag -> its state
    records: tuple[pub.Child, ...]


def _guard(children: list[pub.Child], dest, allow_trial: bool, allow_eol: bool, allow_vulnerable: bool,
           today: dt.date) -> None:
    """The guards on the records, each checked once before a byte is sent: trial, end of life, vulnerable gosu."""
    named = [(f"{dest.repository}:{c.key}-{c.arch}", c) for c in children]
    pub.check_trial([(name, c.trial) for name, c in named], dest, allow_trial)
    pub.check_eol([(name, c.eol) for name, c in named], dest, allow_eol, today)
    pub.check_vulnerable([(name, c.applying) for name, c in named], dest, allow_vulnerable)


def _served(p: ImagePlan, planned: pub.Child, states: dict[str, tags.TagState]) -> pub.Child:
    """The record of the image one of its release's tags already serves with the same inputs, else `planned`."""
    existing = tags.reusable(states, planned.platform_key, p.inputs)
    return pub.record(p, existing) if existing else planned


def _triage(req: Request, registry, dest, allow_shrink: bool, log, allow_trial: bool = False,
            signer: signing.Signer | None = None, allow_eol: bool = False, allow_vulnerable: bool = False,
            reads: dict | None = None) -> Triage:
    """Plan once, check the guards once (trial, end of life, vulnerable gosu, signing identity, shrink), read
    each release's tags once."""
    run = plan(req, log, reads)
    planned = [pub.record(p) for p in run.images]
    _guard(planned, dest, allow_trial, allow_eol, allow_vulnerable, req.today)
    if signer:
        signer.preflight()
    groups = pub.check_children(planned)
    states = tags.read_states(registry, dest.repository, groups)
    tags.check_shrink_all(states, groups, allow_shrink)
    return Triage(run, states, tuple(_served(p, r, states[r.key]) for p, r in zip(run.images, planned)))


def _push(req: Request, engine: Engine, registry, dest, log, triage: Triage
          ) -> tuple[list[pub.Child], signing.Documents]:
    """Build, smoke-test and push by digest what the registry lacks; every image's record in the plan's order,
    and the documents to attest to those pushed."""
    for r in triage.records:
        if r.in_registry:
            log.write(f"push: {r.key}-{r.arch}: registry already serves inputs {r.inputs[:19]} "
                      f"({r.digest[:19]}); not rebuilt, nothing uploaded\n")
    todo = {p.name for p, r in zip(triage.run.images, triage.records) if not r.in_registry}
    pushed: dict[str, tuple[pub.Child, dict[str, dict]]] = {}
    if todo:
        # The plan names what to build; the request only lends the store, entrypoint and smoke settings.
        built = smoke(req, engine, build(req, engine, log, triage.run.only(todo)), log)
        pushed = {b.plan.name: pub.push_child(registry, dest, b, log) for b in built}
    records = [pushed[p.name][0] if p.name in pushed else r for p, r in zip(triage.run.images, triage.records)]
    return records, statements.documents_for({child.digest: docs for child, docs in pushed.values()})


def _seal(registry, dest, log, signer: signing.Signer | None, children: list[pub.Child],
          documents: signing.Documents) -> frozenset[str]:
    """Sign and attest each child by digest (once a run); returns the repository's tags as read before."""
    if not signer or not children:
        return frozenset()
    present = signing.present_tags(registry, dest.repository)
    for c in children:
        signing.seal(signer, registry, dest, c.digest, documents, log, present)
    return present


def _tag(registry, dest, log, signer: signing.Signer | None, layouts: list[tags.Layout],
         children: list[pub.Child], present: frozenset[str]) -> tags.Report:
    # Indexes carry no documents of their own: they are signed, not attested.
    seal = partial(signing.seal, signer, registry, dest, documents=None, log=log, present=present) \
        if signer else None
    moved = tags.apply(registry, dest, layouts, log, seal)
    return tags.Report(layouts, children, moved, registry.bytes_uploaded)


def push(req: Request, engine: Engine, registry, dest, log=sys.stderr, allow_shrink: bool = False,
         allow_trial: bool = False, signer: signing.Signer | None = None, allow_eol: bool = False,
         allow_vulnerable: bool = False, reads: dict | None = None) -> list:
    """Build and smoke-test what the registry lacks, then push each by digest; no tag is created or moved.

    An image whose inputs digest the registry already serves is neither built
    nor pushed: a nightly run with nothing new costs a few registry reads.
    With a signer, each image is signed and attested by digest once pushed
    (one already signed is left as it is). `reads`: pipeline.plan's.
    """
    triage = _triage(req, registry, dest, allow_shrink, log, allow_trial, signer, allow_eol, allow_vulnerable, reads)
    records, documents = _push(req, engine, registry, dest, log, triage)
    _seal(registry, dest, log, signer, records, documents)
    return records


def publish(req: Request, engine: Engine, registry, dest, log=sys.stderr, allow_shrink: bool = False,
            allow_trial: bool = False, signer: signing.Signer | None = None, allow_eol: bool = False,
            allow_vulnerable: bool = False, reads: dict | None = None):
    """build -> smoke -> push every arch by digest (signed, attested) -> one index per flavor (signed) -> move
    tags, in that order. Planned once: the guards and the tags read here are not checked or read again.
    `reads`: pipeline.plan's."""
    start = time.monotonic()
    triage = _triage(req, registry, dest, allow_shrink, log, allow_trial, signer, allow_eol, allow_vulnerable, reads)
    records, documents = _push(req, engine, registry, dest, log, triage)
    present = _seal(registry, dest, log, signer, records, documents)
    report = _tag(registry, dest, log, signer, tags.layout(records, triage.states), records, present)
    summary = "nothing changed, zero bytes pushed" if report.noop else \
        f"{len(report.moved)} tag(s) moved, {report.bytes_uploaded} bytes uploaded"
    log.write(f"publish: {dest.registry}/{dest.repository}: {summary} ({time.monotonic() - start:.1f} s)\n")
    return report


def assemble(children: list, registry, dest, expected: list[tuple[str, str, str]] | None, log=sys.stderr,
             allow_shrink: bool = False, dry_run: bool = False, allow_trial: bool = False,
             signer: signing.Signer | None = None, allow_eol: bool = False, today: dt.date | None = None,
             allow_vulnerable: bool = False):
    """Indexes and tags from push records made on other machines (the split publish's second half).

    With a signer, every child under a tag that moves must be (or is now)
    signed and attested, and every index is signed by digest, before any tag
    moves to it.
    """
    _guard(children, dest, allow_trial, allow_eol, allow_vulnerable, today or dt.date.today())
    if signer and not dry_run:
        signer.preflight()
    groups = pub.check_children(children, expected)
    states = tags.read_states(registry, dest.repository, groups)
    tags.check_shrink_all(states, groups, allow_shrink)
    layouts = tags.layout(children, states)
    if dry_run:
        log.write(f"assemble plan for {dest.registry}/{dest.repository} (dry run: nothing is written):\n")
        log.write("\n".join(tags.describe(layouts, dest)) + "\n")
        return tags.Report(layouts, children)
    # Pushed elsewhere: each must be here before it is signed or named by an index.
    handed = [c for lay in layouts if lay.changes for c in lay.children]
    tags.check_present(registry, dest, handed)
    present = _seal(registry, dest, log, signer, handed, statements.documents_for({}))
    return _tag(registry, dest, log, signer, layouts, children, present)


def dry_run(req: Request, registry, dest, log=sys.stderr, allow_shrink: bool = False, allow_trial: bool = False,
            allow_eol: bool = False, allow_vulnerable: bool = False):
    """What publish would do: fetch + verify gosu (into the cache), read bases and tags; build and push nothing."""
    t = _triage(req, registry, dest, allow_shrink, log, allow_trial, allow_eol=allow_eol,
                allow_vulnerable=allow_vulnerable)
    children = list(t.records)
    layouts = tags.layout(children, t.states)
    log.write(f"publish plan for {dest.registry}/{dest.repository} (dry run: nothing is built, pushed or tagged):\n")
    log.write("\n".join(tags.describe(layouts, dest)) + "\n")
    return tags.Report(layouts, children)
