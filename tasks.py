"""Invoke tasks: declarations only. Rules live in builder/, I/O on a task's behalf in builder/wiring.py,
and the one mapping from errors to exit codes is `cli` below."""

import functools
import shlex
import subprocess
import sys

from invoke import Exit, task

from builder import config, pipeline, wiring
from builder.build.assembly import load
from builder.config import cli_path, project_path
from builder.consumer import reproduce as reproduce_stage, show, verify as verify_stage
from builder.core.emulation import native_arch
from builder.core.engine import Engine
from builder.core.errors import BuilderError, UsageError
from builder.core.refs import parse_ref
from builder.core.registry import Registry, credentials_for
from builder.gosu import fetch as fetch_stage, lock as lockfile, testarchive, testmirror
from builder.local import seed, setup, tools
from builder.publish import matrix as matrix_stage, push as push_stage, signing
from builder.flags import (ASSEMBLE, FETCH, FETCH_FLAGS, IMAGE, LOCK, PUBLISH, PUSH, RELEASE, REPRODUCE, SHOW, SMOKE,
                           TEST_ARCHIVE, VERIFY)
# The sha256 Debian's Sources index (unstable, forky) lists for gosu_1.19.orig.tar.gz.
GOSU_119_ORIG = "cd9719b775dbfedae53923c9b0dc792b66d42c51e0b36652ed6f747fbadc0164"


def cli(name: str, failed: int = 1):
    """One line per error: exit 2 for a request that does not parse, `failed` for a run that could not finish."""
    def wrap(body):
        @functools.wraps(body)
        def run(c, *args, **kw):
            for value in (*args, *kw.values()):
                if value in ("--help", "-h"):  # Invoke hands it to a task's positional: show the help instead
                    subprocess.run([sys.executable, "-m", "invoke", "--help", name], check=False)
                    raise Exit(code=0)
                if isinstance(value, str) and value.startswith("-"):
                    raise Exit(f"{name}: error: {value!r} is not a value: see `invoke {name} --help`", code=2)
            try:
                return body(c, *args, **kw)
            except UsageError as e:
                raise Exit(f"{name}: error: {e}", code=2)
            except (BuilderError, ValueError, OSError) as e:
                raise Exit(f"{name}: error: {e}", code=failed)
        return run
    return wrap


def _request(c, **kw):
    return wiring.build_request(c.config, **kw)


def _seed(c, req):
    seed.ensure_bases(config.local_settings(c.config.local), req.settings, req.targets, sys.stdout)


def _up(c) -> None:
    local = config.local_settings(c.config.local)
    setup.up(local, Engine(), sys.stdout)
    seed.seed(local, config.image_settings(c.config.images), sys.stdout)
    for name in ("cosign", "oras"):
        print(f"up: tools: {name} at {tools.ensure(config.tool_settings(c.config), name, native_arch(), sys.stdout)}")
    pub = signing.make_local_key(wiring.cosign(c.config), project_path(c.config.signing.local_key), sys.stdout)
    print(f"up: signing: the local registry's images are signed with the key pair whose public key is {pub}")


def _fetch(c, for_lock=False, **kw):
    opts = wiring.fetch_options(c.config.gosu, for_lock=for_lock, **kw)
    report = fetch_stage.fetch(opts)
    fetch_stage.print_report(report)
    if not report.ok:
        raise Exit(code=1)
    return opts, report


@task(help=FETCH)
@cli("fetch")
def fetch(c, source=None, version=None, arch=None, mirror=None, key=None, fingerprint=None, suite=None, go=None,
          cache_dir=None, accept_expired=None):
    """Download gosu for each arch and verify it (signature or archive chain, ELF header, lock)."""
    _fetch(c, **{k: v for k, v in locals().items() if k != "c"})


@task(help=LOCK)
@cli("lock")
def lock(c, source=None, version=None, arch=None, mirror=None, key=None, fingerprint=None, suite=None, go=None,
         cache_dir=None, accept_expired=None):
    """Fetch and verify every arch of a release, then rewrite that source's part of gosu.lock.json."""
    opts, report = _fetch(c, for_lock=True, enforce_lock=False, **{k: v for k, v in locals().items() if k != "c"})
    path = project_path(c.config.gosu.lock_file)
    lockfile.save(path, lockfile.updated(lockfile.load(path), opts, report.fetched))
    print(lockfile.summary(path, opts, report.fetched))


@task(help={"k": "only run tests matching this pytest -k expression", "x": "stop at the first failure",
            "no_up": "do not run `invoke up` first (engine tests then skip, or fail under CI)"})
def test(c, k=None, x=False, no_up=False):
    """Run the whole test suite (pytest), after `invoke up` so the engine tests have an engine."""
    if not no_up:
        try:
            _up(c)
        except (BuilderError, ValueError, OSError) as e:
            print(f"test: warning: `invoke up` failed ({e}); tests that need the engine will skip", file=sys.stderr)
    c.run(shlex.join([sys.executable, "-m", "pytest", *(["-k", k] if k else []), *(["-x"] if x else [])]))


def _publish(c, flavor, arch, registry, repository, dry_run, allow_shrink, allow_trial, sign_key=None,
             keyless=False, unsigned=False, **fetch_kw):
    req = _request(c, flavor=flavor, arch=config.publish_arches(c.config, arch), **fetch_kw)
    dest, client = wiring.destination(c.config, registry, repository)
    signer = wiring.signer(c.config, dest, sign_key, keyless, unsigned)
    if dry_run:  # a dry run changes nothing, the local registry included
        return pipeline.dry_run(req, client, dest, sys.stdout, allow_shrink, allow_trial)
    _seed(c, req)
    pipeline.publish(req, Engine(), client, dest, sys.stdout, allow_shrink, allow_trial, signer)


@task(help=PUBLISH)
@cli("publish")
def publish(c, flavor=None, arch=None, registry=None, repository=None, dry_run=False, allow_shrink=False,
            allow_trial=False, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
            fingerprint=None, sign_key=None, keyless=False, unsigned=False, accept_expired=None):
    """Build and smoke-test every flavor/arch, push, sign and attest each by digest, sign each index, move tags."""
    _publish(**locals())


@task(help=RELEASE)
@cli("release")
def release(c, flavor=None, arch=None, source="auto", gosu_version=None, suite=None, go=None, mirror=None, key=None,
            fingerprint=None, accept_expired=None):
    """The main job: fetch + verify gosu, build, smoke-test and publish every flavor to the local registry."""
    _publish(c, flavor, arch, None, None, False, False, False, gosu_version=gosu_version, suite=suite, go=go,
             source=wiring.release_source(source, mirror, key, fingerprint), mirror=mirror, key=key,
             fingerprint=fingerprint, accept_expired=accept_expired)


@task(help=PUSH)
@cli("push")
def push(c, digests_dir, flavor=None, arch=None, registry=None, repository=None, allow_shrink=False,
         allow_trial=False, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
         fingerprint=None, sign_key=None, keyless=False, unsigned=False, accept_expired=None):
    """Split publish, part 1 (one machine per arch): build, smoke-test, push, sign, attest by digest; no tag."""
    req = _request(c, flavor=flavor, arch=arch, gosu_version=gosu_version,
                   **{k: v for k, v in locals().items() if k in FETCH_FLAGS})
    dest, client = wiring.destination(c.config, registry, repository)
    signer = wiring.signer(c.config, dest, sign_key, keyless, unsigned)
    _seed(c, req)
    children = pipeline.push(req, Engine(), client, dest, sys.stdout, allow_shrink, allow_trial, signer)
    for path in push_stage.write_records(cli_path(digests_dir), children):
        print(f"push: wrote {path}")


@task(help=ASSEMBLE)
@cli("assemble")
def assemble(c, digests_dir, flavor=None, arch=None, registry=None, repository=None, dry_run=False,
             allow_shrink=False, allow_trial=False, sign_key=None, keyless=False, unsigned=False):
    """Split publish, part 2: check every expected arch was pushed, write each flavor's index, move its tags."""
    expected = wiring.usage(config.expected_targets, c.config, flavor, config.publish_arches(c.config, arch))
    children = wiring.usage(push_stage.read_records, cli_path(digests_dir))
    dest, client = wiring.destination(c.config, registry, repository)
    signer = wiring.signer(c.config, dest, sign_key, keyless, unsigned)
    pipeline.assemble(children, client, dest, expected, sys.stdout, allow_shrink, dry_run, allow_trial, signer)


@task
@cli("matrix", failed=2)
def matrix(c):
    """Print the nightly's image jobs as one line of JSON: {flavor, arch, runner, emulated} per flavor x arch."""
    print(matrix_stage.to_json(config.matrix_jobs(c.config)))


@task
@cli("up")
def up(c):
    """Make this machine ready: Docker engine, qemu emulation, a registry on 127.0.0.1, seeded bases."""
    _up(c)


@task
def down(c):
    """Stop the engine and registry that `invoke up` started (packages and seeded data stay)."""
    setup.down(config.local_settings(c.config.local), sys.stdout)


@task(help={"arch": "comma-separated dpkg architectures Debian packages gosu for (default: amd64,arm64)",
            "dest": "directory to write the mirror to (default: .cache/test-mirror)"})
@cli("test-mirror")
def test_mirror(c, arch="amd64,arm64", dest=None):
    """Make a gosu mirror from Debian's verified packages, signed by a throwaway key (trial images only)."""
    root = cli_path(dest) or project_path(".cache/test-mirror")
    testmirror.make(root, wiring.fetch_options(c.config.gosu, source="debian", arch=arch), sys.stdout)


@task(help=TEST_ARCHIVE)
@cli("test-archive")
def test_archive(c, dest=None, orig_sha256=GOSU_119_ORIG, version="1.19-1"):
    """A Debian-layout archive for --source rebuild signed by a throwaway key: Debian's real toolchain (trial)."""
    root = cli_path(dest) or project_path(".cache/test-archive")
    made = testarchive.make(root, wiring.fetch_options(c.config.gosu, source="rebuild", arch="amd64"), version,
                            orig_sha256, sys.stderr)
    print(f"test-archive: use it with `invoke -f {made.config} fetch --source rebuild`")


@task(help=IMAGE)
@cli("build")
def build(c, flavor=None, arch=None, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
          fingerprint=None, accept_expired=None):
    """Build org/base-gosu:<flavor>-<arch> images in the local engine from verified gosu."""
    req = _request(**locals())
    _seed(c, req)
    pipeline.build(req, Engine())


@task(help=SMOKE)
@cli("smoke")
def smoke(c, flavor=None, arch=None, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
          fingerprint=None, engine=None, accept_expired=None):
    """Build, then run every smoke check on each image (--network none), under docker or another engine."""
    under = wiring.usage(config.engine_settings, c.config, engine)
    req = _request(c, flavor=flavor, arch=arch, gosu_version=gosu_version,
                   **{k: v for k, v in locals().items() if k in FETCH_FLAGS})
    _seed(c, req)
    pipeline.smoke(req, Engine(), under=under)


@task(help=REPRODUCE)
@cli("reproduce", failed=2)
def reproduce(c, ref, mirror=None, key=None, fingerprint=None):
    """Rebuild a published image from the inputs its labels name; say identical (exit 0) or what differs (exit 1)."""
    flavors, store, options_for = wiring.reproduce_setup(c.config, mirror, key, fingerprint)
    verdicts = reproduce_stage.reproduce(ref, config.ROOT, store, flavors, reproduce_stage.gosu_getter(options_for),
                                         load.registry_client({}))
    print("\n".join(line for v in verdicts for line in v.lines()))
    if not all(v.identical for v in verdicts):
        raise Exit(code=1)


@task(help={**SHOW, "output": "write the JSON to this file instead of standard output"})
@cli("sbom")
def sbom(c, ref, platform=None, output=None):
    """Print the CycloneDX SBOM a published image carries (read from the registry alone)."""
    host, repo, reference = parse_ref(ref)
    text = show.show(load.registry_client({})(host), repo, reference, "sbom", platform)
    if output:
        cli_path(output).write_bytes(text)
    else:
        sys.stdout.write(text.decode())


@task(help=SHOW)
@cli("provenance")
def provenance(c, ref, platform=None):
    """Print the in-toto provenance (SLSA v1) a published image carries (read from the registry alone)."""
    host, repo, reference = parse_ref(ref)
    sys.stdout.write(show.show(load.registry_client({})(host), repo, reference, "provenance", platform).decode())


@task(iterable=["key"], help=VERIFY)
@cli("verify", failed=2)
def verify(c, ref, key=None, identity=None, issuer=None):
    """Before `FROM`: check a published image's signatures, attestations and gosu's sha256 (exit 0: all hold)."""
    trust = wiring.usage(config.trust, c.config, key, identity, issuer)
    host, repo, tag = parse_ref(ref)
    checker = verify_stage.Checker(wiring.cosign(c.config), trust, Registry(host, credentials_for(host)), repo)
    digest, rows = verify_stage.check(checker, tag)
    print("\n".join(verify_stage.table(ref, digest, rows)))
    if not all(r.ok for r in rows):
        raise Exit(code=1)
