"""Stages chained the one way data flows: fetch -> verify -> build -> smoke -> publish."""

from __future__ import annotations

import dataclasses
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from builder.core import emulation
from builder.smoke import engines
from builder.gosu import fetch as fetch_stage
from builder.build import images
from builder.publish import push as pub, signing, attest as statements, tags
from builder.core.engine import Engine
from builder.gosu.fetch import FetchOptions


class PipelineError(Exception):
    pass


@dataclass(frozen=True)
class Request:
    settings: images.ImageSettings
    targets: tuple[images.Target, ...]
    fetch: FetchOptions
    root: Path
    store: Path | None = None
    revision: images.Revision | None = None

    def image_store(self) -> images.Store:
        return images.Store(self.store or self.root / ".cache" / "images")

    def source(self) -> images.Revision:
        return self.revision or images.git_revision(self.root)


def fetch_for(req: Request, log=sys.stderr) -> dict[str, fetch_stage.Fetched]:
    report = fetch_stage.fetch(req.fetch, log=log)
    fetch_stage.print_report(report, out=log, err=log)
    if not report.ok:
        raise PipelineError("gosu could not be fetched and verified; nothing was built")
    return {f.arch: f for f in report.fetched}


def assemble_images(req: Request, log=sys.stderr, then=None) -> list[images.Built]:
    """fetch + verify gosu, then assemble every target; the engine is not needed.

    One worker per arch (two at most): different arches never share base
    layers, so no base is read twice, and inflating and compressing layers
    release the GIL. `then(built)`, if given, runs in the worker on each
    arch's images as soon as they are assembled (the engine load).
    """
    gosu = fetch_for(req, log)
    revision, store = req.source(), req.image_store()
    by_arch: dict[str, list[images.Target]] = {}
    for t in req.targets:
        by_arch.setdefault(t.arch.dpkg, []).append(t)

    def work(targets: list[images.Target]) -> list[tuple[images.Built, float]]:
        clients = images.loader.registry_client({})
        out = []
        for t in targets:
            start = time.monotonic()
            out.append((images.build(store, req.settings, t, gosu[t.arch.gosu], revision, clients),
                        time.monotonic() - start))
        if then:
            then([b for b, _ in out], clients)
        return out

    with ThreadPoolExecutor(max_workers=min(2, len(by_arch))) as pool:
        done = {b.target.name: (b, s) for group in pool.map(work, by_arch.values()) for b, s in group}
    built = []
    for t in req.targets:
        b, seconds = done[t.name]
        log.write(f"assembled {b.tag} ({b.image_id[:19]}, manifest {b.image.digest[:19]}, "
                  f"base {describe_base(b.base)}, "
                  f"gosu {b.gosu.version} from {b.gosu.kind}) in {seconds:.2f} s"
                  + (f" [trial: {b.trial}]" if b.trial else "") + "\n")
        built.append(b)
    return built


def build(req: Request, engine: Engine, log=sys.stderr) -> list[images.Built]:
    """Assemble every target and load each arch's images into the engine (one `docker load` each) to run them."""
    start, loaded = time.monotonic(), []
    built = assemble_images(req, log, then=lambda group, clients: loaded.append(images.load(engine, group, clients)))
    log.write(f"engine: {sum(loaded)} image(s) loaded, {len(built) - sum(loaded)} already there "
              f"({time.monotonic() - start:.2f} s in all)\n")
    return built


def subject_of(b: images.Built, settings: images.ImageSettings, by_id: bool = False) -> "smoke.Subject":
    """`by_id`: start containers from the image ID (the engine that built it runs the checks)."""
    from builder.smoke.run import Subject
    return Subject(b.tag, b.target.arch.dpkg, str(b.target.platform), b.gosu.version, b.gosu.sha256,
                   settings.ops_user, settings.ops_uid, settings.ops_gid, ref=b.image_id if by_id else "")


def smoke(req: Request, engine: Engine, log=sys.stderr, under: engines.EngineSettings | None = None
          ) -> list[images.Built]:
    """Build (cached layers make this cheap), then run every check on every image, in the engine `under`
    names (default: the one that built them; another gets the images copied in)."""
    from builder.smoke import run as smoke_stage
    built = build(req, engine, log)
    emulation.ensure([b.target.arch.dpkg for b in built], log, "smoke")
    failures = []
    with engines.opened(under or engines.EngineSettings(), log) as runner:
        if runner.mode == engine.mode:
            runner = engine
        checks = smoke_stage.checks_for(runner)
        for b in built:
            engines.copy_image(engine, runner, b.tag)
            failures += smoke_stage.run_all(runner, subject_of(b, req.settings, by_id=runner is engine), log, checks)
    if failures:
        for f in failures:
            log.write(f"SMOKE FAILED {f}\n")
        raise PipelineError(f"{len(failures)} smoke check(s) failed; see the lines above")
    log.write(f"smoke: all {len(checks)} checks passed under {runner.mode} on {', '.join(b.tag for b in built)}\n")
    return built


def _pushed_targets(req: Request) -> list[tuple[str, str]]:
    return [(t.flavor.name, t.arch.dpkg) for t in req.targets]


def describe_base(base: images.Base) -> str:
    what = f"{base.ref}@{base.digest[:19]}"
    return f"{what}, a stand-in for {base.standin_for}" if base.standin_for else what


@dataclass(frozen=True)
class Planned:
    """A target with what decides its content, known before anything is built."""
    target: images.Target
    gosu: fetch_stage.Fetched
    base: images.Base
    inputs: str

    @property
    def trial(self) -> str:
        return images.trial_reasons(self.base, self.gosu)


def prepare(req: Request, log=sys.stderr) -> list[Planned]:
    """fetch + verify gosu, resolve each base to its digest, compute each image's inputs digest."""
    gosu = fetch_for(req, log)
    out = []
    for t in req.targets:
        base = images.resolve_base(req.settings, t.flavor, t.arch)
        out.append(Planned(t, gosu[t.arch.gosu], base, images.inputs_digest(req.settings, t, base, gosu[t.arch.gosu])))
    return out


def _states(registry, dest, planned: list[Planned]) -> dict[str, dict]:
    """Each flavor's current tags, read once before anything is pushed."""
    out = {}
    for p in planned:
        f = p.target.flavor
        if f.name not in out:
            out[f.name] = tags.read_tags(registry, dest.repository, tags.tags_for(f.name, f.release, p.gosu.version))
    return out


def _check_shrink(req: Request, states: dict[str, dict], allow_shrink: bool) -> None:
    for name, tag_states in states.items():
        platforms = {str(t.platform) for t in req.targets if t.flavor.name == name}
        floating = dict(list(tag_states.items())[:2])
        tags.check_shrink(floating, platforms, allow_shrink)


def _triage(req: Request, registry, dest, allow_shrink: bool, log, allow_trial: bool = False,
            signer: signing.Signer | None = None):
    """(planned, tag states, registry children keyed by target name for inputs already published, revision)."""
    planned = prepare(req, log)
    pub.check_trial([(f"{req.settings.repository}:{p.target.name}", p.trial) for p in planned], dest, allow_trial)
    if signer:
        signer.preflight()
    states = _states(registry, dest, planned)
    _check_shrink(req, states, allow_shrink)
    rev = req.source()
    revision = (rev.commit, rev.created)
    have = {}
    for p in planned:
        existing = tags.reusable(states[p.target.flavor.name], str(p.target.platform),
                                p.inputs)
        if existing:
            have[p.target.name] = pub.existing_child(p.target, p.gosu.version, p.inputs, existing, revision, p.trial)
    return planned, states, have, revision


def push(req: Request, engine: Engine, registry, dest, log=sys.stderr, allow_shrink: bool = False,
         allow_trial: bool = False, signer: signing.Signer | None = None) -> list:
    """Build and smoke-test what the registry lacks, then push each by digest; no tag is created or moved.

    An image whose inputs digest the registry already serves is neither built
    nor pushed: a nightly run with nothing new costs a few registry reads.
    With a signer, each image is signed and attested by digest once pushed
    (one already signed is left as it is).
    """
    planned, _, have, _ = _triage(req, registry, dest, allow_shrink, log, allow_trial, signer)
    for child in have.values():
        log.write(f"push: {child.flavor}-{child.arch}: registry already serves inputs {child.inputs[:19]} "
                  f"({child.digest[:19]}); not rebuilt, nothing uploaded\n")
    todo = tuple(p.target for p in planned if p.target.name not in have)
    children = dict(have)
    if todo:
        built = smoke(dataclasses.replace(req, targets=todo), engine, log)
        pushed = pub.push_all(registry, dest, built, log)
        children.update((b.target.name, child) for b, child in zip(built, pushed))
    if signer:
        for child in children.values():
            signing.seal(signer, registry, dest, child.digest, statements.documents, log)
    return [children[t.name] for t in req.targets]


def publish(req: Request, engine: Engine, registry, dest, log=sys.stderr, allow_shrink: bool = False,
            allow_trial: bool = False, signer: signing.Signer | None = None):
    """build -> smoke -> push every arch by digest (signed, attested) -> one index per flavor (signed) -> move
    tags, in that order."""
    start = time.monotonic()
    children = push(req, engine, registry, dest, log, allow_shrink, allow_trial, signer)
    report = assemble(children, registry, dest, _pushed_targets(req), log, allow_shrink, allow_trial=allow_trial,
                      signer=signer)
    summary = "nothing changed, zero bytes pushed" if report.noop else \
        f"{len(report.moved)} tag(s) moved, {report.bytes_uploaded} bytes uploaded"
    log.write(f"publish: {dest.registry}/{dest.repository}: {summary} ({time.monotonic() - start:.1f} s)\n")
    return report


def assemble(children: list, registry, dest, expected: list[tuple[str, str]] | None, log=sys.stderr,
             allow_shrink: bool = False, dry_run: bool = False, allow_trial: bool = False,
             signer: signing.Signer | None = None):
    """Indexes and tags from push records (made here, or on other machines in a split publish).

    With a signer, every child must be (or is now) signed and attested and
    every index is signed by digest before any tag moves to it.
    """
    pub.check_trial([(f"{dest.repository}:{c.flavor}-{c.arch}", c.trial) for c in children], dest, allow_trial)
    if signer and not dry_run:
        signer.preflight()
    plans = tags.plan(registry, dest, children, expected, allow_shrink)
    report = tags.Report(plans, children)
    if dry_run:
        log.write(f"assemble plan for {dest.registry}/{dest.repository} (dry run: nothing is written):\n")
        log.write("\n".join(tags.describe(plans, dest)) + "\n")
        return report
    seal = None
    if signer:
        def seal(digest: str, per_arch: bool) -> None:
            signing.seal(signer, registry, dest, digest, statements.documents if per_arch else None, log)
    report.moved = tags.apply(registry, dest, plans, log, seal)
    report.bytes_uploaded = registry.bytes_uploaded
    return report


def dry_run(req: Request, registry, dest, log=sys.stderr, allow_shrink: bool = False, allow_trial: bool = False):
    """What publish would do: fetch + verify gosu (into the cache), read bases and tags; build and push nothing."""
    planned, states, have, revision = _triage(req, registry, dest, allow_shrink, log, allow_trial)
    children = [have.get(p.target.name) or pub.Child(
        p.target.flavor.name, p.target.flavor.release, p.target.arch.dpkg, p.target.platform.as_oci(),
        "(new image)", 0, p.inputs, p.gosu.version, *revision, uploaded=-1, trial=p.trial) for p in planned]
    plans = [tags.plan_flavor(registry, dest, group, allow_shrink, states[name])
             for name, group in pub.check_children(children, _pushed_targets(req)).items()]
    log.write(f"publish plan for {dest.registry}/{dest.repository} (dry run: nothing is built, pushed or tagged):\n")
    log.write("\n".join(tags.describe(plans, dest)) + "\n")
    return tags.Report(plans, children)
