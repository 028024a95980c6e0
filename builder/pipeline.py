"""Stages chained the one way data flows: plan (fetch + verify gosu, resolve bases) -> build -> smoke; shipping.py
takes the plan on to a registry.

Every entry plans once (`plan`) and hands the plan down; nothing below it
fetches gosu, resolves a base or reads a tag a second time. Each stage takes
what the one before returned, and the caller chains them (`smoke` runs the
checks on what `build` returned).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.errors import BuilderError
from builder.config import eol
from builder.image import bases, make
from builder.image.audit import vulns as vuln_stage
from builder.image.assembly import append
from builder.core.clients import Clients
from builder.image.assembly.store import Store
from builder.image.model import Base, Revision, Target
from builder.config.settings import EngineSettings, ImageSettings, NssSettings
from builder.image import nsswrapper
from builder.image.plan import Account, ImagePlan, gosu_of, plan_image
from builder.core import emulation
from builder.core.engine import Engine
from builder.gosu import fetch as fetch_stage
from builder.gosu.fetch import Fetched, FetchOptions
from builder.smoke import engines, schedule


class PipelineError(BuilderError):
    pass


@dataclass(frozen=True)
class Request:
    """What one run is asked for, parsed and validated; `revision` and `entrypoint` are read by the wiring."""
    settings: ImageSettings
    targets: tuple[Target, ...]
    fetch: FetchOptions
    store: Path
    revision: Revision
    entrypoint: append.Entrypoint
    smoke_jobs: int = 1      # smoke checks run at once (smoke.jobs)
    nss_wrapper: "NssSettings | None" = None   # images.nss_wrapper; None: no image carries it
    vuln: vuln_stage.Settings | None = None  # scan gosu with govulncheck (None: no scan, no VEX)
    # Every registry the run reads (bases, their layers), one client per host: the wiring's.
    clients: Clients = field(default_factory=Clients)
    # The day the EOL guard and warnings go by (the wiring reads the clock; tests set it).
    today: dt.date = field(default_factory=dt.date.today)

    def image_store(self) -> Store:
        return Store(self.store)


@dataclass(frozen=True)
class RunPlan:
    """The run's one plan: a record per image, and the verified gosu each names (by gosu arch)."""
    images: tuple[ImagePlan, ...]
    gosu: dict[str, Fetched]

    def only(self, names: set[str]) -> "RunPlan":
        return RunPlan(tuple(p for p in self.images if p.name in names), self.gosu)


def fetch_for(req: Request, log=sys.stderr) -> dict[str, Fetched]:
    report = fetch_stage.fetch(req.fetch, log=log)
    fetch_stage.print_report(report, out=log, err=log)
    if not report.ok:
        raise PipelineError("gosu could not be fetched and verified; nothing was built")
    return {f.arch: f for f in report.fetched}


def plan(req: Request, log=sys.stderr, reads: dict | None = None) -> RunPlan:
    """fetch + verify gosu (and the glibc flavors' nss_wrapper) once per arch, resolve each base to its digest
    once, and plan every image.

    `reads`: the base indexes this run already read (seeding reads them first: wiring.seed returns them), so
    each is read once; they are copied, not added to.
    """
    fetched = fetch_for(req, log)
    s = req.settings
    account = Account(s.ops_user, s.ops_uid, s.ops_gid)
    gosu = {arch: gosu_of(f, make.gosu_bytes(f)) for arch, f in fetched.items()}
    for flavor in dict.fromkeys(t.flavor for t in req.targets):
        line = eol.notice(f"{flavor.name} {flavor.release} ({flavor.base})", flavor.eol, req.today)
        if line:
            log.write(line + "\n")
    unscanned: dict[str, str] = {} if req.vuln else {"*": "the scan is off (vuln.db is empty)"}
    scans = vuln_stage.scan_all(req.vuln, {a: (f.path, f.sha256, f.version, f.kind) for a, f in fetched.items()},
                                log, unscanned) if req.vuln else {}
    nss = req.nss_wrapper
    wants = [t for t in req.targets if nss and nss.wanted(t)]
    libs = nsswrapper.fetch(nss, [t.arch.dpkg for t in wants], log) if wants else {}
    out, known = [], dict(reads or {})
    for t in req.targets:
        base = bases.resolve_base(s, t.flavor, t.arch, req.clients, known)
        out.append(plan_image(t, base, gosu[t.arch.gosu], req.revision, s.repository, account, s.source_url,
                              req.entrypoint, libs[t.arch.dpkg] if t in wants else None,
                              scans.get(t.arch.gosu), unscanned.get(t.arch.gosu) or unscanned.get("*", "")))
    return RunPlan(tuple(out), fetched)


def assemble_images(req: Request, run: RunPlan, log=sys.stderr, then=None) -> list[make.Built]:
    """Assemble every planned image; the engine is not needed.

    One worker per arch (two at most): different arches never share base
    layers, so no base is read twice, and inflating and compressing layers
    release the GIL. `then(built)`, if given, runs in the worker on each
    arch's images as soon as they are assembled (the engine load).
    """
    store = req.image_store()
    by_arch: dict[str, list[ImagePlan]] = {}
    for p in run.images:
        by_arch.setdefault(p.target.arch.dpkg, []).append(p)

    def work(plans: list[ImagePlan]) -> list[tuple[make.Built, float]]:
        clients = req.clients
        out = []
        for p in plans:
            start = time.monotonic()
            out.append((make.build(store, p, run.gosu[p.gosu.arch], req.entrypoint, clients),
                        time.monotonic() - start))
        if then:
            then([b for b, _ in out], clients)
        return out

    with ThreadPoolExecutor(max_workers=max(1, min(2, len(by_arch)))) as pool:
        done = {b.plan.name: (b, s) for group in pool.map(work, by_arch.values()) for b, s in group}
    built = []
    for p in run.images:
        b, seconds = done[p.name]
        log.write(f"assembled {b.tag} ({b.image_id[:19]}, manifest {b.image.digest[:19]}, "
                  f"base {describe_base(b.base)}, "
                  f"gosu {p.gosu.version} from {p.gosu.kind}) in {seconds:.2f} s"
                  + (f" [trial: {b.trial}]" if b.trial else "") + "\n")
        built.append(b)
    return built


def build(req: Request, engine: Engine, log=sys.stderr, run: RunPlan | None = None) -> list[make.Built]:
    """Assemble every target and load each arch's images into the engine (one `docker load` each) to run them."""
    run = run or plan(req, log)
    start, loaded = time.monotonic(), []
    built = assemble_images(req, run, log,
                            then=lambda group, clients: loaded.append(make.load(engine, group, clients)))
    log.write(f"engine: {sum(loaded)} image(s) loaded, {len(built) - sum(loaded)} already there "
              f"({time.monotonic() - start:.2f} s in all)\n")
    return built


def subject_of(b: make.Built, by_id: bool = False) -> "smoke.Subject":
    """`by_id`: start containers from the image ID (the engine that built it runs the checks)."""
    from builder.smoke.suite import Subject
    a = b.plan.account
    return Subject(b.tag, b.target.arch.dpkg, str(b.target.platform), b.plan.gosu.version, b.plan.gosu.sha256,
                   a.user, a.uid, a.gid, ref=b.image_id if by_id else "", names_any_uid=b.plan.nss_wrapper is not None,
                   family=b.target.flavor.key)


def smoke(req: Request, engine: Engine, built: list[make.Built], log=sys.stderr,
          under: EngineSettings | None = None) -> list[make.Built]:
    """Run every check on every image `build` returned (and return them), in the engine `under` names
    (default: `engine`, the one that built them; another gets the images copied in)."""
    from builder.smoke import suite as smoke_stage
    emulation.ensure([b.target.arch.dpkg for b in built], log, "smoke")
    with engines.opened(under or EngineSettings(), log) as runner:
        if runner.mode == engine.mode:
            runner = engine
        checks = smoke_stage.checks_for(runner)
        for b in built:
            engines.copy_image(engine, runner, b.tag)
        subjects = [subject_of(b, by_id=runner is engine) for b in built]
        start = time.monotonic()
        failures = schedule.run_many(runner, subjects, checks, req.smoke_jobs, log)
    if failures:
        for f in failures:
            log.write(f"SMOKE FAILED {f}\n")
        raise PipelineError(f"{len(failures)} smoke check(s) failed; see the lines above")
    log.write(f"smoke: all {len(checks)} checks passed under {runner.mode} on {', '.join(b.tag for b in built)} "
              f"(those the arch does not change once per family and word size; {time.monotonic() - start:.1f} s, "
              f"{req.smoke_jobs} at a time)\n")
    return built


def describe_base(base: Base) -> str:
    what = f"{base.ref}@{base.digest[:19]}"
    return f"{what}, a stand-in for {base.standin_for}" if base.standin_for else what
