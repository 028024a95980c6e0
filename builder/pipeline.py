"""Stages chained the one way data flows: fetch -> verify -> build -> smoke -> publish."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import fetch as fetch_stage, images
from .engine import Engine
from .fetch import FetchOptions


class PipelineError(Exception):
    pass


@dataclass(frozen=True)
class Request:
    settings: images.ImageSettings
    targets: tuple[images.Target, ...]
    fetch: FetchOptions
    root: Path


def fetch_for(req: Request, log=sys.stderr) -> dict[str, fetch_stage.Fetched]:
    report = fetch_stage.fetch(req.fetch, log=log)
    fetch_stage.print_report(report, out=log, err=log)
    if not report.ok:
        raise PipelineError("gosu could not be fetched and verified; nothing was built")
    return {f.arch: f for f in report.fetched}


def build(req: Request, engine: Engine, log=sys.stderr) -> list[images.Built]:
    gosu = fetch_for(req, log)
    revision = images.git_revision(req.root)
    built = []
    for t in req.targets:
        start = time.monotonic()
        b = images.build(engine, req.settings, t, gosu[t.arch.dpkg], revision)
        log.write(f"built {b.tag} ({b.image_id[:19]}, base {b.base.ref}@{b.base.digest[:19]}, "
                  f"gosu {b.gosu.version}) in {time.monotonic() - start:.1f} s\n")
        built.append(b)
    return built


def subject_of(b: images.Built, settings: images.ImageSettings) -> "smoke.Subject":
    from .smoke import Subject
    return Subject(b.tag, b.target.arch.dpkg, str(b.target.arch.platform), b.gosu.version, b.gosu.sha256,
                   settings.ops_user, settings.ops_uid, settings.ops_gid)


def smoke(req: Request, engine: Engine, log=sys.stderr) -> list[images.Built]:
    """Build (cached layers make this cheap), then run every check on every image."""
    from . import smoke as smoke_stage
    built = build(req, engine, log)
    failures = []
    for b in built:
        failures += smoke_stage.run_all(engine, subject_of(b, req.settings), log)
    if failures:
        for f in failures:
            log.write(f"SMOKE FAILED {f}\n")
        raise PipelineError(f"{len(failures)} smoke check(s) failed; see the lines above")
    log.write(f"smoke: all {len(smoke_stage.CHECKS)} checks passed on {', '.join(b.tag for b in built)}\n")
    return built
