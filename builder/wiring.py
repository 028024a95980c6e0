"""Where configuration turns into a run's inputs: reads the lock, git and the entrypoint, probes the gosu
source, builds the registry clients (the destination's, and a run's `Clients` for every host bases come from,
handed down in the Request) and installs the tools a task needs.

builder/config only parses; the stages only take what they are given.
tasks.py and builder/commands.py gather a run's inputs through these, once,
then plan once (pipeline.plan); commands runs the stages and prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import yaml
from invoke import Config

from builder import config
from builder.config import project
from builder.config.project import ProjectSettings
from builder.image.assembly import append
from builder.image.audit import assessments, vulndb, vulns
from builder.image.assembly.store import Store
from builder.image.model import IMAGES, Revision, select_targets
from builder.config.settings import ImageSettings
from builder.config import gosu as gosu_config, keys, publishing
from builder.config.paths import ROOT, project_path
from builder.consumer import reproduce as reproduce_stage, show as show_stage, verify as verify_stage
from builder.core.emulation import native_arch
from builder.core.errors import BuilderError, UsageError
from builder.core.refs import parse_ref
from builder.core.clients import Clients
from builder.core.registry import Registry, credentials_for
from builder.gosu import lock as lockfile
from builder.gosu.fetch import FetchOptions, choose_source
from builder.gosu.sources import deb
from builder.config import eol
from builder.local import seed as seed_stage, seedimage, setup, tools
from builder import shipping
from builder.core.engine import Engine
from builder.pipeline import Request
from builder.publish import signing
from builder.publish.signing import Signer


def project_config(runtime: Path | None = None) -> Config:
    """The project's invoke.yaml (plus `invoke -f RUNTIME`) and environment, as `invoke` in the project loads
    them: for the benchmarks and tests, which drive the stages without a task."""
    cfg = Config(project_location=str(ROOT), runtime_path=str(runtime) if runtime else None)
    cfg.load_project()
    if runtime:
        cfg.load_runtime()
    cfg.load_shell_env()
    return cfg


def parsed(call, *args, **kw):
    """What `call` parses out of configuration, flags or inputs; one that does not parse is the user's to fix:
    one UsageError (exit 2)."""
    try:
        return call(*args, **kw)
    except UsageError:
        raise
    except (ValueError, BuilderError) as e:
        raise UsageError(str(e)) from None


def fetch_options(gosu, *, for_lock: bool = False, log=sys.stderr, **flags) -> FetchOptions:
    """The gosu section and the fetch flags as options: the lock read, `auto` resolved by probing GitHub."""
    lock = parsed(lockfile.load, project_path(gosu["lock_file"]))
    kind = parsed(gosu_config.source_kind, gosu, flags.get("source"))
    if kind == "auto" and not for_lock:
        where = parsed(gosu_config.auto_location, gosu, flags.get("mirror"), flags.get("key"),
                       flags.get("fingerprint"))
        kind, why = choose_source(where, float(gosu.get("probe_timeout", 5)))
        flags = {**flags, "source": kind, "chosen_because": why}
        print(f"gosu source: {kind}, because {why}", file=log)
    parse = gosu_config.lock_options if for_lock else gosu_config.fetch_options
    return parsed(parse, gosu, lock, **flags)


def entrypoint_files() -> append.Entrypoint:
    """images/entrypoint.sh and the entrypoint-*.sh files it sources, as this checkout has them."""
    return append.Entrypoint.of({p.name: p.read_bytes() for p in IMAGES.glob("entrypoint*.sh")})


def git_revision(root: Path, source_date_epoch: str | None = None) -> Revision:
    """The checkout's commit, and SOURCE_DATE_EPOCH if given, else the commit's time."""
    def git(*args):
        p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""
    commit = git("rev-parse", "HEAD") or "unknown"
    value = source_date_epoch if source_date_epoch not in (None, "") else git("log", "-1", "--format=%ct") or "0"
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH is {value!r}: give whole seconds since 1970 (e.g. `git log -1 "
                         "--format=%ct`), or unset it to use the commit's time")
    return Revision(commit, int(value))


def current_date() -> dt.date:
    """The day a task's EOL guard, warnings and `invoke releases` go by, read once per task and handed down
    (a stage called without one, as tests and benchmarks do, reads the clock itself)."""
    return dt.date.today()


def settings(c_config) -> ProjectSettings:
    """The task's configuration, parsed once (config/project.py); a bad key is the user's to fix (exit 2)."""
    return parsed(project.parse, c_config)


def distro_info(s: ProjectSettings, log=sys.stderr) -> eol.DistroInfo:
    """distro-info-data's debian.csv and ubuntu.csv, from the pinned package (tools.distro_info) taken through
    Debian's verified archive chain; the .deb is kept in tools.dir's cache, so later runs fetch nothing."""
    package, pin = s.distro_info
    data, signer = tools.fetch_deb(s.tools, package, pin, "all", "tools.distro_info", native_arch())
    try:
        tables = {name: deb.extract(data, f"/usr/share/distro-info/{name}.csv").decode()
                  for name in ("debian", "ubuntu")}
    except (deb.DebError, UnicodeDecodeError) as e:
        raise tools.ToolError(f"{package} {pin.version}: {e}") from None
    return eol.DistroInfo(pin.version, tables)


def image_settings(s: ProjectSettings, today: dt.date | None = None) -> ImageSettings:
    """images.* with every release's end of life (Debian's and Ubuntu's from distro-info-data), the local
    defaults applied where bases come through the local registry, and a dead default release refused."""
    return parsed(config.with_eol, s.images, distro_info(s), today)


def build_request(s: ProjectSettings, flavor: str | None = None, arch: str | None = None, gosu_version: str | None = None,
                  default_arch: str | None = None, environ=os.environ, release: str | None = None,
                  today: dt.date | None = None, vuln_db: str | None = None, **fetch_flags) -> Request:
    """One run's request: targets checked, gosu options resolved, the revision and entrypoint read."""
    today = today or current_date()
    settings = image_settings(s, today)
    targets = parsed(select_targets, settings, flavor, arch, default_arch or native_arch(), release, today)
    needed = ",".join(dict.fromkeys(t.arch.gosu for t in targets))
    vuln = vuln_settings(s, vuln_db, today)  # a bad assessments file stops the run before any fetch
    opts = fetch_options(s.gosu, version=gosu_version, arch=needed, **fetch_flags)
    return Request(settings, tuple(targets), opts, s.store, git_revision(ROOT, environ.get("SOURCE_DATE_EPOCH")),
                   entrypoint_files(), s.smoke_jobs, vuln=vuln, nss_wrapper=s.nss_wrapper, today=today,
                   clients=Clients(environ))


def check_config(c_config, environ=os.environ) -> None:
    """Refuse, before anything is fetched, a configuration key or INVOKE_* variable the project does not read."""
    declared = yaml.safe_load((ROOT / "invoke.yaml").read_text())
    effective = project.plain(c_config)
    defaults = Config.global_defaults()
    problems = keys.unknown(effective, declared, set(defaults)) + \
        keys.unknown_env(environ, declared, defaults, effective)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:3])})" if len(problems) > 1 else ""
        raise UsageError(f"{problems[0]}{more}")


def vuln_settings(s: ProjectSettings, db: str | None = None, today: dt.date | None = None) -> vulns.Settings | None:
    """gosu's scan: the database (--vuln-db, else vuln.db; "" for none), the reviewed assessments, the local
    copy an unreachable database gives way to, and govulncheck, installed on first use."""
    v = s.vuln
    where = parsed(config.vuln_db, v, db)
    if not where:
        return None
    found = parsed(read_assessments, v.assessments)
    local = ""
    if v.local_db and v.local_db.exists() and not v.required and not vulndb.local_dir(where):
        local = str(parsed(vulndb.unpacked, v.local_db, v.cache_dir / "db", v.local_db_sha256))
    host = native_arch()
    # ensure re-checks an installed binary against its record (downloading nothing) and refuses a host
    # without a pin, so a scanner altered on disk is never run.
    scanner = tools.ensure(s.tools, "govulncheck", host)
    return vulns.Settings(where, scanner, s.tools.tools["govulncheck"].pins[host].version, v.cache_dir, v.timeout,
                          v.required, found, local, today)


def read_assessments(path: Path | None) -> assessments.Assessments:
    """The reviewed assessments file, parsed and checked whole before anything is fetched or built."""
    if path is None:
        return assessments.Assessments("")
    name = os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise assessments.AssessmentError(f"{name}: {e.strerror}; fix vuln.assessments") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise assessments.AssessmentError(f"{name}: does not parse as YAML{at} "
                                          f"({getattr(e, 'problem', None) or e})") from None
    return assessments.parse(data, name)


def release_fetch(flags: dict) -> dict:
    """`release` takes gosu from `auto` unless told; naming a mirror or key names the configured source instead,
    as for every other task."""
    named = flags.get("mirror") or flags.get("key") or flags.get("fingerprint")
    return {**flags, "source": flags.get("source") or (None if named else "auto")}


def destination(s: ProjectSettings, registry: str | None = None, repository: str | None = None):
    """(Destination, Registry client) for publish/push/assemble; credentials from the environment."""
    dest, retries, backoff = parsed(publishing.destination, s.publish, registry, repository)
    return dest, Registry(dest.registry, credentials_for(dest.registry), retries=retries, backoff=backoff)


def cosign(s: ProjectSettings) -> Path:
    """cosign from Debian's archive (pinned), installed under tools.dir on first use and re-checked against its
    record on every later one."""
    return tools.ensure(s.tools, "cosign", native_arch())


def signer(s: ProjectSettings, dest, key: str | None = None, keyless: bool = False, unsigned: bool = False,
           environ=os.environ) -> Signer | None:
    """The cosign signer for a publish to `dest` (None with --unsigned); refused before any byte is sent."""
    chosen, by_identity, local_key = parsed(publishing.signing_choice, s.signing, key, keyless)
    identity = parsed(signing.choose, chosen, by_identity, unsigned, dest.local, local_key, dest.registry)
    return None if identity is None else Signer(parsed(cosign, s), identity, dict(environ))


def reproduce(s: ProjectSettings, ref: str, mirror: str | None = None, key: str | None = None,
              fingerprint: str | None = None) -> list[reproduce_stage.Verdict]:
    """`invoke reproduce`: the published image's plan rebuilt in this checkout's store, gosu from the cache
    or fetched again from where it came (`mirror`, `key`)."""
    settings = image_settings(s)
    store = Store(s.store)

    def options_for(version: str, arch: str, kind: str) -> FetchOptions:
        return fetch_options(s.gosu, version=version, arch=arch, mirror=mirror, key=key,
                             fingerprint=fingerprint, enforce_lock=False, source=kind)
    return reproduce_stage.reproduce(ref, ROOT, store, settings.flavors, reproduce_stage.gosu_getter(options_for),
                                     Clients(), settings.releases, reproduce_stage.nss_wrapper_getter(s.nss_wrapper))


def show(ref: str, kind: str, platform: str | None) -> bytes:
    """`invoke sbom` / `provenance`: the document a published image carries, from the registry alone."""
    host, repo, reference = parse_ref(ref)
    return show_stage.show(Clients()(host), repo, reference, kind, platform)


def verify(s: ProjectSettings, ref: str, keys, identity: str | None, issuer: str | None, origins=None):
    """`invoke verify`: (digest, rows) of every check on a published image, with the configured trust."""
    trust = parsed(publishing.trust, s.signing, keys, identity, issuer, origins)
    host, repo, tag = parse_ref(ref)
    checker = verify_stage.Checker(cosign(s), trust, Registry(host, credentials_for(host)), repo)
    return verify_stage.check(checker, tag)


def up(s: ProjectSettings, engine, log) -> None:
    """`invoke up`: engine, emulation and registry, seeded bases, cosign and oras, the local key pair."""
    setup.up(s.local, engine, log)
    seed_stage.seed(s.local, image_settings(s), log, clients=Clients())
    for name in ("cosign", "oras", "govulncheck"):
        log.write(f"up: tools: {name} at {tools.ensure(s.tools, name, native_arch(), log)}\n")
    if s.local_default_note:
        log.write(f"up: {s.local_default_note}\n")
    pub = signing.make_local_key(cosign(s), s.signing.local_key, log)
    log.write(f"up: signing: the local registry's images are signed with the key pair whose public key is {pub}\n")


def seed(s: ProjectSettings, req: Request) -> dict:
    """Seed what the local registry lacks for these targets (only when bases come through it); returns the base
    indexes read meanwhile, for the plan to read no base twice (pipeline.plan's `reads`)."""
    reads: dict = {}
    seed_stage.ensure_bases(s.local, req.settings, req.targets, sys.stdout, reads, req.clients)
    return reads


def publish(s: ProjectSettings, fetch, options: shipping.PublishOptions = shipping.PublishOptions(), flavor=None, arch=None,
            release=None, vuln_db=None, registry=None, repository=None, sign_key=None, keyless=False,
            unsigned=False, log=sys.stdout):
    """`invoke publish` and `release`: one request, destination and signer (in `options`), then the publish or
    its dry run."""
    dest, client = destination(s, registry, repository)  # where to is the first thing a user gets wrong
    req = build_request(s, flavor=flavor, arch=publishing.publish_arches(s.publish, arch), release=release,
                        vuln_db=vuln_db, **fetch)
    if s.local_default_note and not release:
        log.write(f"{s.local_default_note}\n")
    options = dataclasses.replace(options, signer=signer(s, dest, sign_key, keyless, unsigned))
    reads = {} if options.dry_run else seed(s, req)  # a dry run changes nothing, the local registry included
    return shipping.publish(req, Engine(), client, dest, log, options, reads)


def releases(s: ProjectSettings, today: dt.date) -> list[str]:
    """`invoke releases`: every configured release of each flavor as a table."""
    from builder.image import releases as table
    note = s.local_default_note
    return table.lines(image_settings(s, today), today, lambda f: seedimage.seedable(s.local, f)) + (
        [f"defaults here: {note}"] if note else [])

