"""Invoke entry point: parse arguments, call `builder`. No logic lives here."""

import functools
import shlex
import sys

from invoke import Exit, task

from builder import config, pipeline
from builder.gosu import fetch as fetch_stage, lock as lockfile, testarchive, testmirror
from builder.build import images as images_stage
from builder.local import setup as local_stage, seed as seed_stage, tools
from builder.publish import matrix as matrix_stage, push as publish_stage, signing
from builder.consumer import reproduce as reproduce_stage, verify as trustcheck
from builder.build.assembly import load as load_stage
from builder.consumer import show as show_stage
from builder.core.emulation import EmulationError
from builder.core.engine import Engine, EngineError
from builder.core.registry import RegistryError

FETCH_HELP = {
    "source": "where gosu comes from: github (tianon's signed release), debian (Debian's archive), rebuild "
              "(compiled here from the source and Go toolchain in Debian's archive) or auto (github when it "
              "answers, else debian) (default: gosu.source, github)",
    "version": "gosu release to fetch (default: the version pinned in gosu.lock.json for that source)",
    "arch": "comma-separated dpkg architectures (default: all nine)",
    "mirror": "github: HTTP base URL or directory laid out as <mirror>/<version>/<file> (default: GitHub releases); "
              "debian: a Debian mirror's base URL or a directory with dists/ and pool/ (default: deb.debian.org)",
    "key": "OpenPGP public key file to trust instead of keys/ (the fingerprint check still applies)",
    "fingerprint": "full fingerprint the signing key must have (default: the pinned one)",
    "suite": "debian source: the suite to take gosu from (default: gosu.debian.suite, trixie); rebuild: the "
             "suite whose Sources lists gosu's orig tarball (default: gosu.rebuild.source_suite, unstable)",
    "go": "rebuild source: the Go minor version to build with, e.g. 1.27 (default: the newest golang-1.NN-go "
          "in gosu.rebuild.suites)",
    "cache_dir": "where verified binaries are cached (default: .cache/gosu)",
    "accept_expired": "debian and rebuild sources: comma-separated suites whose InRelease may be past its "
                      "Valid-Until (a stale mirror or a snapshot); still checked against the pinned keys, and what "
                      "comes from them is a trial image (default: gosu.debian.accept_expired, none)",
}
FETCH_FLAGS = ("source", "suite", "go", "mirror", "key", "fingerprint", "accept_expired")


IMAGE_HELP = {
    "flavor": "comma-separated flavors: minideb, ubuntu, alpine (default: all)",
    "arch": "comma-separated image architectures (dpkg names, plus alpine's armv7), or all: every arch each "
            "flavor lists in images.flavors (default: this machine's)",
    "gosu_version": FETCH_HELP["version"],
    **{k: FETCH_HELP[k] for k in FETCH_FLAGS},
}


PUBLISH_HELP = {
    **IMAGE_HELP,
    "arch": "comma-separated architectures every flavor is published for, or all: each flavor's own list "
            "(default: publish.arches, else local.arches: amd64,arm64)",
    "registry": "HOST[:PORT] to publish to (default: the local registry, 127.0.0.1:5000)",
    "repository": "repository in that registry (default: images.repository, org/base-gosu)",
    "dry_run": "print what would be built, pushed, skipped and tagged; change nothing",
    "allow_shrink": "let a tag lose platforms it serves now (refused by default)",
    "allow_trial": "let trial images (stand-in bases, gosu trusted through a test key) go to a registry other "
                   "than the local one (refused by default)",
    "sign_key": "sign (and attest) with this cosign key file or KMS URI, its password from COSIGN_PASSWORD "
                "(default: signing.key; the local registry: the key pair `invoke up` made)",
    "keyless": "sign with the CI runner's OIDC identity (cosign keyless; default: signing.keyless)",
    "unsigned": "publish to a registry other than the local one without signatures (refused by default)",
}
PUBLISH_ERRORS = (pipeline.PipelineError, publish_stage.PublishError, RegistryError, EngineError, ValueError,
                  signing.SigningError)


def _request(c, **kw):
    try:
        req = config.build_request(c.config, **kw)
    except ValueError as e:
        raise Exit(f"error: {e}", code=2)
    if req.fetch.chosen_because:
        print(f"gosu source: {req.fetch.kind}, because {req.fetch.chosen_because}", file=sys.stderr)
    return req


def _seed_bases(c, name, req):
    """Seed what the local registry lacks for these targets (only when bases come through it)."""
    try:
        seed_stage.ensure_bases(config.local_settings(c.config.local), req.settings, req.targets, sys.stdout)
    except (local_stage.SetupError, RegistryError, EmulationError, ValueError) as e:
        raise Exit(f"{name}: error: {e}", code=1)


def _stage(c, name, run, **kw):
    """Validate the request, then run one pipeline entry; every failure is one clear line."""
    req = _request(c, **kw)
    _seed_bases(c, name, req)
    try:
        run(req, Engine())
    except (pipeline.PipelineError, EngineError, local_stage.SetupError, ValueError) as e:
        raise Exit(f"{name}: error: {e}", code=1)


def _up(c) -> None:
    settings = config.local_settings(c.config.local)
    local_stage.up(settings, Engine(), sys.stdout)
    seed_stage.seed(settings, config.image_settings(c.config.images), sys.stdout)
    settings = config.tool_settings(c.config)
    for name in ("cosign", "oras"):
        where = tools.ensure(settings, name, local_stage.native_arch(), sys.stdout)
        print(f"up: tools: {name} at {where}")
    pub = signing.make_local_key(tools.path(settings, "cosign"), config.project_path(c.config.signing.local_key),
                                 sys.stdout)
    print(f"up: signing: the local registry's images are signed with the key pair whose public key is {pub}")


def _fetch(c, enforce_lock=True, for_lock=False, **kw):
    try:
        opts = (config.lock_options if for_lock else config.fetch_options)(c.config.gosu, enforce_lock=enforce_lock,
                                                                           **kw)
    except ValueError as e:  # bad flags or config: arches, mirror, fingerprint, lock file
        raise Exit(f"error: {e}", code=2)
    if opts.chosen_because:
        print(f"gosu source: {opts.kind}, because {opts.chosen_because}", file=sys.stderr)
    report = fetch_stage.fetch(opts)
    fetch_stage.print_report(report)
    if not report.ok:
        raise Exit(code=1)
    return opts, report


@task(help=FETCH_HELP)
def fetch(c, source=None, version=None, arch=None, mirror=None, key=None, fingerprint=None, suite=None, go=None,
          cache_dir=None, accept_expired=None):
    """Download gosu for each arch and verify it (signature or archive chain, ELF header, lock)."""
    _fetch(c, source=source, version=version, arch=arch, mirror=mirror, key=key, fingerprint=fingerprint,
           suite=suite, go=go, cache_dir=cache_dir, accept_expired=accept_expired)


@task(help={**FETCH_HELP, "version": "gosu release to pin (required for github; debian: default the suite's)",
            "arch": "comma-separated dpkg architectures (default: all nine for github; every arch the suite "
                    "builds gosu for, for debian)"})
def lock(c, source=None, version=None, arch=None, mirror=None, key=None, fingerprint=None, suite=None, go=None,
         cache_dir=None, accept_expired=None):
    """Fetch and verify every arch of a release, then rewrite that source's part of gosu.lock.json."""
    opts, report = _fetch(c, enforce_lock=False, for_lock=True, source=source, version=version, arch=arch,
                          mirror=mirror, key=key, fingerprint=fingerprint, suite=suite, go=go, cache_dir=cache_dir,
                          accept_expired=accept_expired)
    path = config.project_path(c.config.gosu.lock_file)
    try:
        new = lockfile.updated(lockfile.load(path), opts, report.fetched)
    except lockfile.LockFileError as e:
        raise Exit(f"lock: error: {e}", code=1)
    lockfile.save(path, new)
    expired = report.fetched[0].detail("expired_accepted")
    print(f"wrote {path}: {opts.kind} gosu {report.fetched[0].version}, {len(report.fetched)} arches"
          + (f" (from expired suite(s), recorded: {expired}; fetches without --accept-expired still refuse them)"
             if expired else ""))


@task(help={"k": "only run tests matching this pytest -k expression", "x": "stop at the first failure",
            "no_up": "do not run `invoke up` first (engine tests then skip, or fail under CI)"})
def test(c, k=None, x=False, no_up=False):
    """Run the whole test suite (pytest), after `invoke up` so the engine tests have an engine."""
    if not no_up:
        try:
            _up(c)
        except (local_stage.SetupError, EngineError, OSError, ValueError, tools.ToolError, RegistryError,
                EmulationError) as e:
            print(f"test: warning: `invoke up` failed ({e}); tests that need the engine will skip", file=sys.stderr)
    args = (["-k", k] if k else []) + (["-x"] if x else [])
    c.run(shlex.join([sys.executable, "-m", "pytest", *args]))


def _destination(c, registry, repository):
    try:
        return config.destination(c.config, registry, repository)
    except ValueError as e:
        raise Exit(f"error: {e}", code=2)


def _signer(c, name, dest, sign_key, keyless, unsigned):
    try:
        return config.signer(c.config, dest, sign_key, keyless, unsigned)
    except (signing.SigningError, tools.ToolError, ValueError) as e:
        raise Exit(f"{name}: error: {e}", code=2)


def _publish(c, name, flavor, arch, registry, repository, dry_run, allow_shrink, allow_trial, sign_key=None,
             keyless=False, unsigned=False, **fetch_kw):
    req = _request(c, flavor=flavor, arch=config.publish_arches(c.config, arch), **fetch_kw)
    dest, client = _destination(c, registry, repository)
    signer = _signer(c, name, dest, sign_key, keyless, unsigned)
    if not dry_run:  # a dry run changes nothing, the local registry included
        _seed_bases(c, name, req)
    try:
        if dry_run:
            pipeline.dry_run(req, client, dest, sys.stdout, allow_shrink, allow_trial)
        else:
            pipeline.publish(req, Engine(), client, dest, sys.stdout, allow_shrink, allow_trial, signer)
    except PUBLISH_ERRORS as e:
        raise Exit(f"{name}: error: {e}", code=1)


@task(help=PUBLISH_HELP)
def publish(c, flavor=None, arch=None, registry=None, repository=None, dry_run=False, allow_shrink=False,
            allow_trial=False, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
            fingerprint=None, sign_key=None, keyless=False, unsigned=False, accept_expired=None):
    """Build and smoke-test every flavor/arch, push, sign and attest each by digest, sign each index, move tags."""
    _publish(c, "publish", flavor, arch, registry, repository, dry_run, allow_shrink, allow_trial, sign_key,
             keyless, unsigned, source=source, gosu_version=gosu_version, suite=suite, go=go, mirror=mirror,
             key=key, fingerprint=fingerprint, accept_expired=accept_expired)


@task(help={**{k: v for k, v in PUBLISH_HELP.items()
               if k not in ("registry", "repository", "dry_run", "allow_shrink", "allow_trial", "sign_key",
                            "keyless", "unsigned")},
            "source": FETCH_HELP["source"].replace("(default: gosu.source, github)", "(default: auto)")})
def release(c, flavor=None, arch=None, source="auto", gosu_version=None, suite=None, go=None, mirror=None, key=None,
            fingerprint=None, accept_expired=None):
    """The main job: fetch + verify gosu, build, smoke-test and publish every flavor to the local registry."""
    if source == "auto" and (mirror or key or fingerprint):
        source = None  # naming a mirror or key names the configured source, as for every other task
    _publish(c, "release", flavor, arch, None, None, False, False, False, source=source, gosu_version=gosu_version,
             suite=suite, go=go, mirror=mirror, key=key, fingerprint=fingerprint, accept_expired=accept_expired)


@task(help={**{k: v for k, v in PUBLISH_HELP.items() if k not in ("dry_run",)},
            "arch": IMAGE_HELP["arch"],
            "digests_dir": "directory to write one <flavor>-<arch>.json push record per image into (required)"})
def push(c, digests_dir, flavor=None, arch=None, registry=None, repository=None, allow_shrink=False,
         allow_trial=False, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
         fingerprint=None, sign_key=None, keyless=False, unsigned=False, accept_expired=None):
    """Split publish, part 1 (one machine per arch): build, smoke-test, push, sign, attest by digest; no tag."""
    req = _request(c, flavor=flavor, arch=arch, source=source, gosu_version=gosu_version, suite=suite, go=go,
                   mirror=mirror, key=key, fingerprint=fingerprint, accept_expired=accept_expired)
    dest, client = _destination(c, registry, repository)
    signer = _signer(c, "push", dest, sign_key, keyless, unsigned)
    _seed_bases(c, "push", req)
    try:
        children = pipeline.push(req, Engine(), client, dest, sys.stdout, allow_shrink, allow_trial, signer)
        for path in publish_stage.write_records(config.cli_path(digests_dir), children):
            print(f"push: wrote {path}")
    except (*PUBLISH_ERRORS, OSError) as e:
        raise Exit(f"push: error: {e}", code=1)


@task(help={"digests_dir": "directory holding the push records (*.json) of every push job (required)",
            "flavor": "comma-separated flavors whose records must all be there, and no others (default: all "
                      "configured)",
            "arch": PUBLISH_HELP["arch"], "registry": PUBLISH_HELP["registry"],
            "repository": PUBLISH_HELP["repository"], "dry_run": PUBLISH_HELP["dry_run"],
            "allow_shrink": PUBLISH_HELP["allow_shrink"], "allow_trial": PUBLISH_HELP["allow_trial"],
            **{k: PUBLISH_HELP[k] for k in ("sign_key", "keyless", "unsigned")}})
def assemble(c, digests_dir, flavor=None, arch=None, registry=None, repository=None, dry_run=False,
             allow_shrink=False, allow_trial=False, sign_key=None, keyless=False, unsigned=False):
    """Split publish, part 2: check every expected arch was pushed, write each flavor's index, move its tags."""
    try:
        expected = config.expected_targets(c.config, flavor, config.publish_arches(c.config, arch))
        children = publish_stage.read_records(config.cli_path(digests_dir))
    except (ValueError, publish_stage.PublishError) as e:
        raise Exit(f"assemble: error: {e}", code=2)
    dest, client = _destination(c, registry, repository)
    signer = _signer(c, "assemble", dest, sign_key, keyless, unsigned)
    try:
        pipeline.assemble(children, client, dest, expected, sys.stdout, allow_shrink, dry_run, allow_trial, signer)
    except PUBLISH_ERRORS as e:
        raise Exit(f"assemble: error: {e}", code=1)


@task
def matrix(c):
    """Print the nightly's image jobs as one line of JSON: {flavor, arch, runner, emulated} per flavor x arch."""
    try:
        print(matrix_stage.to_json(config.matrix_jobs(c.config)))
    except ValueError as e:
        raise Exit(f"matrix: error: {e}", code=2)


@task
def up(c):
    """Make this machine ready: Docker engine, qemu emulation, a registry on 127.0.0.1, seeded bases."""
    try:
        _up(c)
    except (local_stage.SetupError, EngineError, ValueError, tools.ToolError, RegistryError, EmulationError) as e:
        raise Exit(f"up: error: {e}", code=1)


@task
def down(c):
    """Stop the engine and registry that `invoke up` started (packages and seeded data stay)."""
    local_stage.down(config.local_settings(c.config.local), sys.stdout)


@task(help={"arch": "comma-separated dpkg architectures Debian packages gosu for (default: amd64,arm64)",
            "dest": "directory to write the mirror to (default: .cache/test-mirror)"})
def test_mirror(c, arch="amd64,arm64", dest=None):
    """Make a gosu mirror from Debian's verified packages, signed by a throwaway key (trial images only)."""
    root = config.cli_path(dest) or config.project_path(".cache/test-mirror")
    try:
        testmirror.make(root, config.fetch_options(c.config.gosu, source="debian", arch=arch), sys.stdout)
    except (local_stage.SetupError, ValueError) as e:
        raise Exit(f"test-mirror: error: {e}", code=1)


# The sha256 and size Debian's Sources index (unstable, forky) lists for gosu_1.19.orig.tar.gz.
GOSU_119_ORIG = "cd9719b775dbfedae53923c9b0dc792b66d42c51e0b36652ed6f747fbadc0164"


@task(help={"dest": "directory to write the archive to (default: .cache/test-archive)",
            "orig_sha256": "the sha256 gosu's orig tarball must have (default: 1.19's, as Debian lists it)",
            "version": "the Debian source version the archive lists gosu as (default: 1.19-1)"})
def test_archive(c, dest=None, orig_sha256=GOSU_119_ORIG, version="1.19-1"):
    """A Debian-layout archive for --source rebuild signed by a throwaway key: Debian's real toolchain (trial)."""
    root = config.cli_path(dest) or config.project_path(".cache/test-archive")
    try:
        made = testarchive.make(root, config.fetch_options(c.config.gosu, source="rebuild", arch="amd64"), version,
                                orig_sha256, sys.stderr)
    except (local_stage.SetupError, ValueError, OSError) as e:
        raise Exit(f"test-archive: error: {e}", code=1)
    except Exception as e:  # DownloadError, VerificationError: one line, not a traceback
        raise Exit(f"test-archive: error: {e}", code=1)
    print(f"test-archive: use it with `invoke -f {made.config} fetch --source rebuild`")


@task(help=IMAGE_HELP)
def build(c, flavor=None, arch=None, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
          fingerprint=None, accept_expired=None):
    """Build org/base-gosu:<flavor>-<arch> images in the local engine from verified gosu."""
    _stage(c, "build", pipeline.build, flavor=flavor, arch=arch, source=source, gosu_version=gosu_version,
           suite=suite, go=go, mirror=mirror, key=key, fingerprint=fingerprint, accept_expired=accept_expired)


@task(help={**IMAGE_HELP, "engine": "run the checks under docker (default), podman, podman-rootless or "
                                     "docker-userns (default: smoke.engine in invoke.yaml)"})
def smoke(c, flavor=None, arch=None, source=None, gosu_version=None, suite=None, go=None, mirror=None, key=None,
          fingerprint=None, engine=None, accept_expired=None):
    """Build, then run every smoke check on each image (--network none), under docker or another engine."""
    try:
        under = config.engine_settings(c.config, engine)
    except ValueError as e:
        raise Exit(f"error: {e}", code=2)
    _stage(c, "smoke", functools.partial(pipeline.smoke, under=under), flavor=flavor, arch=arch, source=source,
           gosu_version=gosu_version, suite=suite, go=go, mirror=mirror, key=key, fingerprint=fingerprint,
           accept_expired=accept_expired)

@task(help={"ref": "published image: HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:... (an index checks every "
                   "platform)",
            "mirror": "where its gosu can be fetched if the cache lacks it (default: gosu.mirror, else GitHub)",
            "key": FETCH_HELP["key"], "fingerprint": FETCH_HELP["fingerprint"]})
def reproduce(c, ref, mirror=None, key=None, fingerprint=None):
    """Rebuild a published image from the inputs its labels name; say identical (exit 0) or what differs (exit 1)."""
    try:
        settings, store, options_for = config.reproduce_setup(c.config, mirror, key, fingerprint)
        verdicts = reproduce_stage.reproduce(ref, config.ROOT, store, settings.flavors, settings,
                                             reproduce_stage.gosu_getter(options_for),
                                             load_stage.registry_client({}))
    except (reproduce_stage.ReproduceError, RegistryError, ValueError, OSError) as e:
        raise Exit(f"reproduce: error: {e}", code=2)
    for v in verdicts:
        print("\n".join(v.lines()))
    if not all(v.identical for v in verdicts):
        raise Exit(code=1)


SHOW_HELP = {
    "ref": "published image: HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:... (an index gives every platform's "
           "document, keyed by platform, unless --platform names one)",
    "platform": "only this platform's document, e.g. linux/amd64 or linux/arm64",
}


def _show(kind, ref, platform, output=None):
    try:
        host, repo, reference = images_stage.parse_ref(ref)
        text = show_stage.show(load_stage.registry_client({})(host), repo, reference, kind, platform)
        if output:
            config.cli_path(output).write_bytes(text)
        else:
            sys.stdout.write(text.decode())
    except (show_stage.ShowError, RegistryError, OSError) as e:
        raise Exit(f"{kind}: error: {e}", code=1)


@task(help={**SHOW_HELP, "output": "write the JSON to this file instead of standard output"})
def sbom(c, ref, platform=None, output=None):
    """Print the CycloneDX SBOM a published image carries (read from the registry alone)."""
    _show("sbom", ref, platform, output)


@task(help=SHOW_HELP)
def provenance(c, ref, platform=None):
    """Print the in-toto provenance (SLSA v1) a published image carries (read from the registry alone)."""
    _show("provenance", ref, platform)


@task(iterable=["key"],
      help={"ref": "HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:... (an index checks every platform)",
            "key": "a trusted cosign public key file or KMS URI; repeat it for a key rotation (default: "
                   "signing.trusted_keys, else the local registry's public key)",
            "identity": "keyless: the certificate identity regexp to require (signing.identity)",
            "issuer": "keyless: the OIDC issuer to require (signing.issuer)"})
def verify(c, ref, key=None, identity=None, issuer=None):
    """Before `FROM`: check a published image's signatures, attestations and gosu's sha256 (exit 0: all hold)."""
    from builder.core.registry import Registry, credentials_for
    try:
        trust = config.trust(c.config, key, identity, issuer)
        host, repo, tag = images_stage.parse_ref(ref)
        cosign = tools.ensure(config.tool_settings(c.config), "cosign", local_stage.native_arch())
        checker = trustcheck.Checker(cosign, trust, Registry(host, credentials_for(host)), repo)
        digest, rows = trustcheck.check(checker, tag)
    except (ValueError, trustcheck.TrustError, RegistryError, tools.ToolError) as e:
        raise Exit(f"verify: error: {e}", code=2)
    print("\n".join(trustcheck.table(ref, digest, rows)))
    if not all(r.ok for r in rows):
        raise Exit(code=1)
