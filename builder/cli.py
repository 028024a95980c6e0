"""How tasks are declared: the flags' help texts (once, shared by every task that takes the flag), the fetch
flags a task gains, and `cli`, the one mapping from the BuilderError family to exit codes."""

import functools
import inspect
import subprocess
import sys

from invoke import Exit

from builder import wiring
from builder.core.errors import BuilderError, UsageError

FETCH_FLAGS = ("source", "suite", "go", "mirror", "key", "fingerprint", "accept_expired")

FETCH = {
    "source": "where gosu comes from: github (tianon's signed release), debian (Debian's archive), rebuild "
              "(compiled here from the source and Go toolchain in Debian's archive) or auto (github when it "
              "answers, else debian) (default: gosu.source, github)",
    "version": "gosu release to fetch (default: the version pinned in gosu.lock.json for that source)",
    "arch": "comma-separated dpkg architectures, or all (the default: all nine for github; for debian and rebuild, "
            "every arch gosu.debian.arches or gosu.rebuild.arches lists)",
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

IMAGE = {
    "flavor": "comma-separated flavors: minideb, ubuntu, alpine (default: all)",
    "arch": "comma-separated image architectures (dpkg names, plus alpine's armv7), or all: every arch each "
            "flavor lists in images.flavors (default: this machine's)",
    "gosu_version": FETCH["version"],
    **{k: FETCH[k] for k in FETCH_FLAGS},
    "release": "comma-separated releases (images.flavors.<flavor>.releases), or all: every release of each "
               "flavor not past its end of life (default: each flavor's default release; `invoke releases` "
               "lists them)",
    "vuln_db": "Go vulnerability database to scan gosu against: an https URL or a directory in vuln.go.dev's "
               "layout; empty: no scan (default: vuln.db, https://vuln.go.dev)",
}



PUBLISH = {
    **IMAGE,
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
    "allow_eol": "let images whose base release is past its end of life go to a registry other than the local "
                 "one (refused by default; `invoke releases` shows the dates)",
    "allow_vulnerable": "let images whose gosu has a vulnerable function present (govulncheck) go to a registry "
                        "other than the local one (refused by default)",
}

SHOW = {
    "ref": "published image: HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:... (an index gives every platform's "
           "document, keyed by platform, unless --platform names one)",
    "platform": "only this platform's document, e.g. linux/amd64 or linux/arm64",
}



LOCK = {**FETCH, "version": "gosu release to pin (required for github; debian: default the suite's)",
            "arch": "comma-separated dpkg architectures (default: all nine for github; every arch the suite "
                    "builds gosu for, for debian)"}

RELEASE = {**{k: v for k, v in PUBLISH.items()
               if k not in ("registry", "repository", "dry_run", "allow_trial", "sign_key",
                            "keyless", "unsigned", "allow_eol", "allow_vulnerable")},
            "source": FETCH["source"].replace("(default: gosu.source, github)", "(default: auto)")}

PUSH = {**{k: v for k, v in PUBLISH.items() if k not in ("dry_run",)},
            "arch": IMAGE["arch"],
            "digests_dir": "directory to write one <flavor>-<arch>.json push record per image into (required)"}

ASSEMBLE = {"digests_dir": "directory holding the push records (*.json) of every push job (required)",
            "flavor": "comma-separated flavors whose records must all be there, and no others (default: all "
                      "configured)",
            "arch": PUBLISH["arch"], "registry": PUBLISH["registry"],
            "repository": PUBLISH["repository"], "dry_run": PUBLISH["dry_run"],
            "allow_shrink": PUBLISH["allow_shrink"], "allow_trial": PUBLISH["allow_trial"],
            **{k: PUBLISH[k] for k in ("sign_key", "keyless", "unsigned", "release", "allow_eol",
                                       "allow_vulnerable")}}

MATRIX = {"release": "comma-separated releases, or all (default: all: every release of each flavor not past "
                     "its end of life)"}

TEST_ARCHIVE = {"dest": "directory to write the archive to (default: .cache/test-archive)",
            "orig_sha256": "the sha256 gosu's orig tarball must have (default: 1.19's, as Debian lists it)",
            "version": "the Debian source version the archive lists gosu as (default: 1.19-1)"}

SMOKE = {**IMAGE, "engine": "run the checks under docker (default), podman, podman-rootless or "
                                     "docker-userns (default: smoke.engine in invoke.yaml)"}

REPRODUCE = {"ref": "published image: HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:... (an index checks every "
                   "platform)",
            "mirror": "where its gosu can be fetched if the cache lacks it (default: gosu.mirror, else GitHub)",
            "key": FETCH["key"], "fingerprint": FETCH["fingerprint"]}

VERIFY = {"ref": "HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:... (an index checks every platform)",
            "key": "a trusted cosign public key file or KMS URI; repeat it for a key rotation (default: "
                   "signing.trusted_keys, else the local registry's public key)",
            "identity": "keyless: the certificate identity regexp to require (signing.identity)",
            "issuer": "keyless: the OIDC issuer to require (signing.issuer)",
            "origin": "HOST[:PORT]/REPO a signature may name besides REF's own repository: where a mirrored copy "
                      "was signed; repeat it for several (default: verify.origins, none)"}


def cli(name: str, failed: int = 1, fetch: tuple[str, ...] = ()):
    """One line per error: exit 2 for a request that does not parse, `failed` for a run that could not finish;
    a body that returns a non-zero int exits with it. The body gets the task's configuration parsed once
    (config/project.py's ProjectSettings) where Invoke hands it the context.

    `fetch`: flags added to the task's signature (declared once, here) and handed to the body as `fetch`.
    """
    def wrap(body):
        @functools.wraps(body)
        def run(c, *args, **kw):
            for value in (*args, *kw.values()):
                if value in ("--help", "-h"):  # Invoke hands it to a task's positional: show the help instead
                    subprocess.run([sys.executable, "-m", "invoke", "--help", name], check=False)
                    raise Exit(code=0)
                if isinstance(value, str) and value.startswith("-"):
                    raise Exit(f"{name}: error: {value!r} is not a value: see `invoke {name} --help`", code=2)
            if fetch:
                kw["fetch"] = {k: kw.pop(k, None) for k in fetch}
            try:
                wiring.check_config(c.config)
                code = body(wiring.settings(c.config), *args, **kw)
            except UsageError as e:
                raise Exit(f"{name}: error: {e}", code=2)
            except (BuilderError, ValueError, OSError) as e:
                raise Exit(f"{name}: error: {e}", code=failed)
            if isinstance(code, int) and code:  # the body's exit code: it ended unfinished and said why
                raise Exit(code=code)
        if fetch:  # where `fetch` stands, and --accept-expired last: the short flags stay as they always were
            params = list(inspect.signature(body).parameters.values())
            at = [p.name for p in params].index("fetch")
            flag = [inspect.Parameter(f, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for f in fetch]
            run.__signature__ = inspect.Signature(params[:at] + flag[:-1] + params[at + 1:] + flag[-1:])
        return run
    return wrap


# What build, smoke, publish, push and release hand to the fetch stage, and what fetch and lock take
# (accept_expired last, as it was added last: Invoke gives short flags in signature order).
IMAGE_FETCH = ("source", "gosu_version", "suite", "go", "mirror", "key", "fingerprint", "accept_expired")
FETCH_ONLY = ("source", "version", "arch", "mirror", "key", "fingerprint", "suite", "go", "cache_dir", "accept_expired")
