"""Invoke tasks: declarations only. Each body is one call: into builder/commands.py (a task that is more than
one call) or builder/wiring.py (I/O on a task's behalf); the one mapping from errors to exit codes is
builder/cli.py's `cli`."""

import shlex
import sys

from invoke import task

from builder import commands, config, shipping, wiring
from builder.cli import (ASSEMBLE, FETCH, FETCH_ONLY, IMAGE, IMAGE_FETCH, LOCK, MATRIX, PUBLISH, PUSH, RELEASE,
                         REPRODUCE, SHOW, SMOKE, TEST_ARCHIVE, VERIFY, cli)
from builder.core.engine import Engine
from builder.core.errors import BuilderError
from builder.local import setup

# The sha256 Debian's Sources index (unstable, forky) lists for gosu_1.19.orig.tar.gz.
GOSU_119_ORIG = "cd9719b775dbfedae53923c9b0dc792b66d42c51e0b36652ed6f747fbadc0164"


@task(help=FETCH)
@cli("fetch", fetch=FETCH_ONLY)
def fetch(s, fetch=None):
    """Download gosu for each arch and verify it (signature or archive chain, ELF header, lock)."""
    return commands.fetch(s, fetch)


@task(help=LOCK)
@cli("lock", fetch=FETCH_ONLY)
def lock(s, fetch=None):
    """Fetch and verify every arch of a release, then rewrite that source's part of gosu.lock.json."""
    return commands.lock(s, fetch)


@task(help={"k": "only run tests matching this pytest -k expression", "x": "stop at the first failure",
            "no_up": "do not run `invoke up` first (engine tests then skip, or fail under CI)"})
def test(c, k=None, x=False, no_up=False):
    """Run the whole test suite (pytest), after `invoke up` so the engine tests have an engine."""
    if not no_up:
        try:
            wiring.up(wiring.settings(c.config), Engine(), sys.stdout)
        except (BuilderError, ValueError, OSError) as e:
            print(f"test: warning: `invoke up` failed ({e}); tests that need the engine will skip", file=sys.stderr)
    c.run(shlex.join([sys.executable, "-m", "pytest", *(["-k", k] if k else []), *(["-x"] if x else [])]))


@task(help=PUBLISH)
@cli("publish", fetch=IMAGE_FETCH)
def publish(s, flavor=None, arch=None, registry=None, repository=None, dry_run=False, allow_shrink=False,
            allow_trial=False, fetch=None, sign_key=None, keyless=False, unsigned=False, release=None, allow_eol=False,
            vuln_db=None, allow_vulnerable=False):
    """Build and smoke-test every flavor/arch, push, sign and attest each by digest, sign each index, move tags."""
    options = shipping.PublishOptions(allow_shrink=allow_shrink, allow_trial=allow_trial, allow_eol=allow_eol,
                                      allow_vulnerable=allow_vulnerable, dry_run=dry_run)
    wiring.publish(s, fetch, options, flavor=flavor, arch=arch, release=release, vuln_db=vuln_db, registry=registry,
                   repository=repository, sign_key=sign_key, keyless=keyless, unsigned=unsigned)


@task(help=RELEASE)
@cli("release", fetch=IMAGE_FETCH)
def release(s, flavor=None, arch=None, fetch=None, release=None, vuln_db=None, allow_shrink=False):
    """The main job: fetch + verify gosu, build, smoke-test and publish every flavor to the local registry."""
    wiring.publish(s, wiring.release_fetch(fetch), shipping.PublishOptions(allow_shrink=allow_shrink), flavor=flavor,
                   arch=arch, release=release, vuln_db=vuln_db)


@task(help=PUSH)
@cli("push", fetch=IMAGE_FETCH)
def push(s, digests_dir, flavor=None, arch=None, registry=None, repository=None, allow_shrink=False,
         allow_trial=False, fetch=None, sign_key=None, keyless=False, unsigned=False, release=None, allow_eol=False,
         vuln_db=None, allow_vulnerable=False):
    """Split publish, part 1 (one machine per arch): build, smoke-test, push, sign, attest by digest; no tag."""
    commands.push(s, digests_dir, fetch, shipping.PublishOptions(
        allow_shrink=allow_shrink, allow_trial=allow_trial, allow_eol=allow_eol, allow_vulnerable=allow_vulnerable),
        flavor=flavor, arch=arch, release=release, vuln_db=vuln_db, registry=registry, repository=repository,
        sign_key=sign_key, keyless=keyless, unsigned=unsigned)


@task(help=ASSEMBLE)
@cli("assemble")
def assemble(s, digests_dir, flavor=None, arch=None, registry=None, repository=None, dry_run=False,
             allow_shrink=False, allow_trial=False, sign_key=None, keyless=False, unsigned=False, release=None,
             allow_eol=False, allow_vulnerable=False):
    """Split publish, part 2: check every expected arch was pushed, write each release's index, move its tags."""
    commands.assemble(s, digests_dir, shipping.PublishOptions(
        allow_shrink=allow_shrink, allow_trial=allow_trial, allow_eol=allow_eol, allow_vulnerable=allow_vulnerable,
        dry_run=dry_run), flavor=flavor, arch=arch, release=release, registry=registry, repository=repository,
        sign_key=sign_key, keyless=keyless, unsigned=unsigned)


@task(help=MATRIX)
@cli("matrix", failed=2)
def matrix(s, release="all"):
    """Print the nightly's image jobs as one line of JSON: {flavor, release, arch, runner, emulated} per job."""
    commands.matrix(s, release)


@task
@cli("releases")
def releases(s):
    """Print every configured release of each flavor: default?, end of life, days left, arches, seedable here?"""
    print("\n".join(wiring.releases(s, wiring.current_date())))


@task
@cli("up")
def up(s):
    """Make this machine ready: Docker engine, qemu emulation, a registry on 127.0.0.1, seeded bases."""
    wiring.up(s, Engine(), sys.stdout)


@task
def down(c):
    """Stop the engine and registry that `invoke up` started (packages and seeded data stay)."""
    setup.down(config.local_settings(c.config.local), sys.stdout)


@task(help={"arch": "comma-separated dpkg architectures Debian packages gosu for (default: amd64,arm64)",
            "dest": "directory to write the mirror to (default: .cache/test-mirror)"})
@cli("test-mirror")
def test_mirror(s, arch="amd64,arm64", dest=None):
    """Make a gosu mirror from Debian's verified packages, signed by a throwaway key (trial images only)."""
    commands.test_mirror(s, arch, dest)


@task(help=TEST_ARCHIVE)
@cli("test-archive")
def test_archive(s, dest=None, orig_sha256=GOSU_119_ORIG, version="1.19-1"):
    """A Debian-layout archive for --source rebuild signed by a throwaway key: Debian's real toolchain (trial)."""
    commands.test_archive(s, dest, orig_sha256, version)


@task(help=IMAGE)
@cli("build", fetch=IMAGE_FETCH)
def build(s, flavor=None, arch=None, fetch=None, release=None, vuln_db=None):
    """Build org/base-gosu:<flavor>-<release>-<arch> images in the local engine from verified gosu."""
    commands.build(s, fetch, flavor=flavor, arch=arch, release=release, vuln_db=vuln_db)


@task(help=SMOKE)
@cli("smoke", fetch=IMAGE_FETCH)
def smoke(s, flavor=None, arch=None, fetch=None, engine=None, release=None, vuln_db=None):
    """Build, then run every smoke check on each image (--network none), under docker or another engine."""
    commands.smoke(s, fetch, engine, flavor=flavor, arch=arch, release=release, vuln_db=vuln_db)


@task(help=REPRODUCE)
@cli("reproduce", failed=2)
def reproduce(s, ref, mirror=None, key=None, fingerprint=None):
    """Rebuild a published image from the inputs its labels name; say identical (exit 0) or what differs (exit 1)."""
    return commands.reproduce(s, ref, mirror, key, fingerprint)


@task(help={**SHOW, "output": "write the JSON to this file instead of standard output"})
@cli("sbom")
def sbom(s, ref, platform=None, output=None):
    """Print the CycloneDX SBOM a published image carries (read from the registry alone)."""
    commands.sbom(ref, platform, output)


@task(help=SHOW)
@cli("provenance")
def provenance(s, ref, platform=None):
    """Print the in-toto provenance (SLSA v1) a published image carries (read from the registry alone)."""
    commands.show(ref, "provenance", platform)


@task(help=SHOW)
@cli("vex")
def vex(s, ref, platform=None):
    """Print the OpenVEX document a published image carries: which of gosu's Go vulnerabilities apply."""
    commands.show(ref, "vex", platform)


@task(iterable=["key", "origin"], help=VERIFY)
@cli("verify", failed=2)
def verify(s, ref, key=None, identity=None, issuer=None, origin=None):
    """Before `FROM`: check a published image's signatures, attestations and gosu's sha256 (exit 0: all hold)."""
    return commands.verify(s, ref, key, identity, issuer, origin)
