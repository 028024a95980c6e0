"""A run's images shipped to a registry: publish, push, assemble and the dry run, over the one plan.

Each entry plans once (pipeline.plan), checks the guards once (trial, end of
life, vulnerable gosu, signing identity, shrink) and reads each release's
tags once; only what the registry does not already serve with the same
inputs is built, smoke-tested and pushed, by digest, before any index is
written or tag moved.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass

from builder.core.engine import Engine
from builder.image.plan import ImagePlan
from builder.pipeline import Request, RunPlan, build, plan, smoke
from builder.publish import attest as statements, push as pub, signing, tags


def _pushed_targets(req: Request) -> list[tuple[str, str, str]]:
    return [(t.flavor.name, t.flavor.release, t.arch.dpkg) for t in req.targets]


@dataclass
class Triage:
    """A publish's plan: the images, their flavors' tags as read once, and one record per image in the plan's
    order: the image the registry already serves with the same inputs, else the planned one (no digest yet)."""
    run: RunPlan
    states: dict[str, dict]         # flavor-release -> tag -> TagState
    records: tuple[pub.Child, ...]
    present: set[str] | None = None  # the repository's tags once signing listed them (what is signed)


def _guard(children: list[pub.Child], dest, allow_trial: bool, allow_eol: bool, allow_vulnerable: bool,
           today: dt.date) -> None:
    """The guards on the records, each checked once before a byte is sent: trial, end of life, vulnerable gosu."""
    named = [(f"{dest.repository}:{c.key}-{c.arch}", c) for c in children]
    pub.check_trial([(name, c.trial) for name, c in named], dest, allow_trial)
    pub.check_eol([(name, c.eol) for name, c in named], dest, allow_eol, today)
    pub.check_vulnerable([(name, c.applying) for name, c in named], dest, allow_vulnerable)


def _served(p: ImagePlan, planned: pub.Child, states: dict) -> pub.Child:
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
    states = {}
    for p in run.images:
        f = p.target.flavor
        if f.key not in states:
            states[f.key] = tags.read_tags(registry, dest.repository, tags.tags_for(
                f.name, f.release, p.gosu.version, f.default, p.gosu.kind))
    for key, tag_states in states.items():
        platforms = {str(t.platform) for t in req.targets if t.flavor.key == key}
        tags.check_shrink(dict(list(tag_states.items())[:-1]), platforms, allow_shrink)
    return Triage(run, states, tuple(_served(p, r, states[r.key]) for p, r in zip(run.images, planned)))


def _push(req: Request, engine: Engine, registry, dest, log, triage: Triage,
          signer: signing.Signer | None) -> list[pub.Child]:
    for r in triage.records:
        if r.in_registry:
            log.write(f"push: {r.key}-{r.arch}: registry already serves inputs {r.inputs[:19]} "
                      f"({r.digest[:19]}); not rebuilt, nothing uploaded\n")
    todo = {p.name for p, r in zip(triage.run.images, triage.records) if not r.in_registry}
    children = {p.name: r for p, r in zip(triage.run.images, triage.records)}
    made: dict[str, dict[str, dict]] = {}
    if todo:
        # The plan names what to build; the request only lends the store, entrypoint and smoke settings.
        built = smoke(req, engine, build(req, engine, log, triage.run.only(todo)), log)
        for b in built:
            child, documents = pub.push_child(registry, dest, b, log)
            children[b.plan.name] = child
            made[child.digest] = documents
    if signer:
        triage.present = signing.present_tags(registry, dest.repository)
        for child in children.values():
            signing.seal(signer, registry, dest, child.digest, statements.documents_for(made), log, triage.present)
    return [children[t.name] for t in req.targets]


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
    return _push(req, engine, registry, dest, log, triage, signer)


def publish(req: Request, engine: Engine, registry, dest, log=sys.stderr, allow_shrink: bool = False,
            allow_trial: bool = False, signer: signing.Signer | None = None, allow_eol: bool = False,
            allow_vulnerable: bool = False, reads: dict | None = None):
    """build -> smoke -> push every arch by digest (signed, attested) -> one index per flavor (signed) -> move
    tags, in that order. Planned once: the guards and the tags read here are not checked or read again.
    `reads`: pipeline.plan's."""
    start = time.monotonic()
    triage = _triage(req, registry, dest, allow_shrink, log, allow_trial, signer, allow_eol, allow_vulnerable, reads)
    children = _push(req, engine, registry, dest, log, triage, signer)
    plans = tags.plan(registry, dest, children, _pushed_targets(req), allow_shrink, triage.states)
    report = _move_tags(plans, children, registry, dest, log, signer, triage.present)
    summary = "nothing changed, zero bytes pushed" if report.noop else \
        f"{len(report.moved)} tag(s) moved, {report.bytes_uploaded} bytes uploaded"
    log.write(f"publish: {dest.registry}/{dest.repository}: {summary} ({time.monotonic() - start:.1f} s)\n")
    return report


def _move_tags(plans, children, registry, dest, log, signer, listed: set[str] | None = None) -> "tags.Report":
    """`listed`: the repository's tags as this run's push already listed (and added to) them."""
    report = tags.Report(plans, children)
    seal = None
    if signer:
        present: list[set[str]] = [] if listed is None else [listed]   # listed when the first seal needs them

        def seal(digest: str, per_arch: bool) -> None:
            if not present:
                present.append(signing.present_tags(registry, dest.repository))
            signing.seal(signer, registry, dest, digest, statements.documents_for({}) if per_arch else None, log,
                         present[0])
    report.moved = tags.apply(registry, dest, plans, log, seal)
    report.bytes_uploaded = registry.bytes_uploaded
    return report


def assemble(children: list, registry, dest, expected: list[tuple[str, str, str]] | None, log=sys.stderr,
             allow_shrink: bool = False, dry_run: bool = False, allow_trial: bool = False,
             signer: signing.Signer | None = None, allow_eol: bool = False, today: dt.date | None = None,
             allow_vulnerable: bool = False):
    """Indexes and tags from push records made on other machines (the split publish's second half).

    With a signer, every child must be (or is now) signed and attested and
    every index is signed by digest before any tag moves to it.
    """
    _guard(children, dest, allow_trial, allow_eol, allow_vulnerable, today or dt.date.today())
    if signer and not dry_run:
        signer.preflight()
    plans = tags.plan(registry, dest, children, expected, allow_shrink)
    if dry_run:
        log.write(f"assemble plan for {dest.registry}/{dest.repository} (dry run: nothing is written):\n")
        log.write("\n".join(tags.describe(plans, dest)) + "\n")
        return tags.Report(plans, children)
    return _move_tags(plans, children, registry, dest, log, signer)


def dry_run(req: Request, registry, dest, log=sys.stderr, allow_shrink: bool = False, allow_trial: bool = False,
            allow_eol: bool = False, allow_vulnerable: bool = False):
    """What publish would do: fetch + verify gosu (into the cache), read bases and tags; build and push nothing."""
    t = _triage(req, registry, dest, allow_shrink, log, allow_trial, allow_eol=allow_eol,
                allow_vulnerable=allow_vulnerable)
    children = list(t.records)
    plans = tags.plan(registry, dest, children, _pushed_targets(req), allow_shrink, t.states)
    log.write(f"publish plan for {dest.registry}/{dest.repository} (dry run: nothing is built, pushed or tagged):\n")
    log.write("\n".join(tags.describe(plans, dest)) + "\n")
    return tags.Report(plans, children)
