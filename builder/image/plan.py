"""One record per image, resolved once: what the image will be made of, and the labels that say so.

A run plans each image once (gosu fetched and verified, the base resolved to
its digest, the inputs digest computed) and hands the `ImagePlan` down: build
assembles exactly it, publish decides reuse by its inputs digest, and its
labels are written from it. `from_labels` reads an image's labels back into
the same record, which is how `invoke reproduce` knows what to rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from builder.image.assembly import append
from builder.image.assembly.accounts import Account
from builder.config import eol as eol_mod
from builder.image.audit import goinfo
from builder.image.model import LABEL, Base, Revision, Target
from builder.config.settings import Flavor
from builder.image.nsswrapper import NssWrapper
from builder.gosu.fetch import Fetched
from builder.image.audit.vulns import Scan

OCI = "org.opencontainers.image"
# Facts of where a Debian or rebuilt gosu came from (suite, package, toolchain, dependencies): the fetch
# vouches for them, the bytes do not; an image carries them as labels and a rebuild takes them as published.
# gosu's vulnerability scan: findings that apply (vulnerable functions present), what a version-only scanner
# reports, and the database's date as far as this gosu is concerned (image/audit/vulns.py, Scan.label).
VULNS = f"{LABEL}.gosu.vulns"
SOURCE_PREFIXES = (f"{LABEL}.gosu.debian.", f"{LABEL}.gosu.rebuild.")
NSS = f"{LABEL}.nss-wrapper"   # nss_wrapper's labels, present only on images that carry it
NEEDED = (f"{OCI}.revision", f"{OCI}.source", f"{OCI}.title", f"{OCI}.base.name", f"{OCI}.base.digest",
          f"{LABEL}.base.platform-digest", f"{LABEL}.gosu.version", f"{LABEL}.gosu.sha256", f"{LABEL}.flavor",
          f"{LABEL}.ops", f"{LABEL}.source-date-epoch", f"{LABEL}.inputs")


class LabelError(ValueError):
    """An image's labels do not name what it was made of."""


@dataclass(frozen=True)
class Gosu:
    """gosu as an image names it: enough to fetch the same bytes again and to say who vouched for them."""
    arch: str
    version: str
    sha256: str
    kind: str                  # github, debian or rebuild
    trust_root: str            # the fingerprint whose signature vouched
    pinned: bool               # that key is one of keys/ (not a test or ad-hoc key)
    go_version: str = ""       # from gosu's own build information
    module_version: str = ""
    expired_accepted: str = ""  # archive evidence taken past its Valid-Until (--accept-expired)
    source_labels: tuple[tuple[str, str], ...] = ()  # debian.* / rebuild.* labels, in label order


@dataclass(frozen=True)
class ImagePlan:
    target: Target
    base: Base
    gosu: Gosu
    revision: Revision
    repository: str
    account: Account
    source_url: str
    inputs: str                # digest of everything that decides the image's content
    nss_wrapper: NssWrapper | None = None   # the glibc flavors' library; None: the image has none
    vulns: str = ""            # the org.base-gosu.gosu.vulns label: gosu's scan ("" when none was made)
    # The scan itself (the image's VEX is made from it), on the run that made it; never read back from labels.
    scan: "Scan | None" = field(default=None, compare=False, repr=False)
    # Why gosu was not scanned on that run ("" when it was): the provenance says it, so `invoke vex` can.
    unscanned: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def tag(self) -> str:
        return f"{self.repository}:{self.target.name}"

    @property
    def trial(self) -> str:
        return trial_reasons(self.base, self.gosu)


def trial_reasons(base: Base, gosu: Gosu) -> str:
    """Why an image may not leave this machine: its inputs that are not production ones ("" if none)."""
    reasons = []
    if base.standin_for:
        reasons.append(f"base {base.ref} is a stand-in for {base.standin_for}")
    if not gosu.pinned:
        reasons.append(f"gosu is trusted through key {gosu.trust_root}, which is not pinned in keys/")
    if gosu.expired_accepted:
        reasons.append(f"gosu came from an expired Debian archive Release, accepted with --accept-expired "
                       f"(expired_accepted: {gosu.expired_accepted})")
    return "; ".join(reasons)


def gosu_of(fetched: Fetched, data: bytes) -> Gosu:
    """The image's view of a verified gosu; `data` is its bytes (build information is a function of them)."""
    try:
        info = goinfo.parse(data, str(fetched.path))
        go_version, module_version = info.go_version, info.main.version if info.main else ""
    except goinfo.GoInfoError:  # not a Go binary with build information: neither is known
        go_version = module_version = ""
    source = []
    if fetched.kind == "debian":
        source = [(f"{LABEL}.gosu.debian.suite", fetched.detail("suite")),
                  (f"{LABEL}.gosu.debian.package", fetched.detail("package"))]
    elif fetched.kind == "rebuild":
        source = list(rebuild_labels(fetched).items())
    return Gosu(fetched.arch, fetched.version, fetched.sha256, fetched.kind, fetched.trust_root, fetched.pinned,
                go_version, module_version, fetched.detail("expired_accepted"), tuple(source))


def rebuild_labels(gosu: Fetched) -> dict[str, str]:
    """What a rebuilt gosu was compiled from: Go, the toolchain package, gosu's source, each dependency."""
    deps = json.loads(gosu.detail("deps") or "[]")
    return {
        f"{LABEL}.gosu.rebuild.go-version": gosu.detail("go_version"),
        f"{LABEL}.gosu.rebuild.toolchain": f"{gosu.detail('go_package')} {gosu.detail('go_package_version')}",
        f"{LABEL}.gosu.rebuild.source": f"gosu {gosu.detail('package')} ({gosu.detail('suite')}), "
                                        f"{gosu.detail('orig')} sha256:{gosu.detail('orig_sha256')}",
        f"{LABEL}.gosu.rebuild.dependencies": ", ".join(f"{m} {mv} from {p} {v}" for p, v, m, mv in deps),
    }


def inputs_digest(target: Target, base: Base, gosu: Gosu, account: Account, entrypoint: append.Entrypoint,
                  nss_wrapper: NssWrapper | None = None, vulns: str = "") -> str:
    """Everything that determines the image's content; equal digests mean nothing to push."""
    doc = {
        "base": base.digest, "gosu": gosu.sha256, "flavor": target.flavor.name, "arch": target.arch.dpkg,
        "gosu_source": [gosu.kind, gosu.trust_root, gosu.pinned], "trial": trial_reasons(base, gosu),
        "assembly": append.CODE, "entrypoint": entrypoint.sha256(),
        "user": [account.user, account.uid, account.gid],
        # Implied by gosu's sha256; its own key so that images published before these labels existed count
        # as changed and are rebuilt (with their SBOM and provenance), not reused.
        "gosu_build": [gosu.go_version, gosu.module_version],
        # The release and its end of life are labels (content) of their own.
        "release": [target.flavor.release, str(target.flavor.eol or "")],
    }
    if nss_wrapper:
        doc["nss_wrapper"] = [nss_wrapper.sha256, nss_wrapper.package, nss_wrapper.version, nss_wrapper.deb_sha256]
    if vulns:  # the scan's label (and VEX) change with what the database says about this gosu; no scan, no key
        doc["vulns"] = vulns
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def plan_image(target: Target, base: Base, gosu: Gosu, revision: Revision, repository: str, account: Account,
               source_url: str, entrypoint: append.Entrypoint, nss_wrapper: NssWrapper | None = None,
               scan: "Scan | None" = None, unscanned: str = "") -> ImagePlan:
    vulns = scan.label if scan else ""
    return ImagePlan(target, base, gosu, revision, repository, account, source_url,
                     inputs_digest(target, base, gosu, account, entrypoint, nss_wrapper, vulns), nss_wrapper,
                     vulns, scan, "" if scan else unscanned)


def to_labels(p: ImagePlan) -> dict[str, str]:
    """Every label an image carries, in one place: where each input came from and who vouched for it."""
    g = p.gosu
    labels = {
        f"{OCI}.source": p.source_url,
        f"{OCI}.revision": p.revision.commit,
        f"{OCI}.created": p.revision.created,
        f"{OCI}.title": f"{p.repository}:{p.target.flavor.name}",
        f"{OCI}.base.name": p.base.ref,
        f"{OCI}.base.digest": p.base.index_digest,
        f"{LABEL}.base.platform-digest": p.base.digest,
        f"{LABEL}.gosu.version": g.version,
        f"{LABEL}.gosu.sha256": g.sha256,
        f"{LABEL}.gosu.source": g.kind,
        f"{LABEL}.gosu.trust-root": g.trust_root,
        f"{LABEL}.gosu.pinned": "true" if g.pinned else "false",
        f"{LABEL}.gosu.go-version": g.go_version,
        f"{LABEL}.gosu.module-version": g.module_version,
        f"{LABEL}.flavor": p.target.flavor.name,
        f"{LABEL}.ops": str(p.account),
        f"{LABEL}.source-date-epoch": str(p.revision.epoch),
        f"{LABEL}.inputs": p.inputs,
        f"{LABEL}.trial": p.trial,
    }
    labels[f"{LABEL}.base.release"] = p.target.flavor.release
    if p.target.flavor.eol:
        # The date and where it came from: what the EOL guard (publish, push, assemble) reads back.
        labels[f"{LABEL}.base.eol"] = str(p.target.flavor.eol)
    if p.base.standin_for:
        labels[f"{LABEL}.base.standin-for"] = p.base.standin_for
    if g.expired_accepted:
        # Which archive evidence was past its Valid-Until; the trust root above is still Debian's key.
        labels[f"{LABEL}.gosu.expired-accepted"] = g.expired_accepted
    if p.vulns:
        labels[VULNS] = p.vulns
    labels.update(g.source_labels)
    if p.nss_wrapper:
        n = p.nss_wrapper
        labels.update({f"{NSS}.package": n.package, f"{NSS}.version": n.version, f"{NSS}.sha256": n.sha256,
                       f"{NSS}.deb-sha256": n.deb_sha256, f"{NSS}.suite": n.suite})
    return labels


def nss_wrapper_of(labels: dict[str, str], arch: str) -> NssWrapper | None:
    """The nss_wrapper an image's labels name (its bytes are fetched again by the pin they give)."""
    keys = [f"{NSS}.{k}" for k in ("package", "version", "sha256", "deb-sha256", "suite")]
    if not any(labels.get(k) for k in keys):
        return None
    missing = [k for k in keys if not labels.get(k)]
    if missing:
        raise LabelError(f"the image lacks the label(s) {', '.join(missing)}: its nss_wrapper cannot be named")
    return NssWrapper(arch, *(labels[k] for k in keys))


def platform_string(config: dict) -> str:
    """'linux/arm/v7' from an image config's os, architecture and variant."""
    return "/".join(config[k] for k in ("os", "architecture", "variant") if config.get(k))


def from_labels(labels: dict[str, str], platform: str, flavors: dict[str, Flavor],
                releases: dict[str, dict[str, Flavor]] | None = None) -> ImagePlan:
    """The plan an image was built from, read back from its labels and its config's platform; `releases`
    (flavor -> release -> Flavor) finds a release other than the default one."""
    missing = [k for k in NEEDED if not labels.get(k)]
    if missing:
        raise LabelError(f"the image lacks the label(s) {', '.join(missing)}: it was not assembled by a "
                         "reproducible base-gosu build, so there is nothing to rebuild it from")
    flavor = flavors.get(labels[f"{LABEL}.flavor"])
    if flavor is None:
        raise LabelError(f"flavor {labels[f'{LABEL}.flavor']!r} is not configured in this checkout")
    release = labels.get(f"{LABEL}.base.release")
    if release and release != flavor.release:
        flavor = (releases or {}).get(flavor.name, {}).get(release)
        if flavor is None:
            raise LabelError(f"release {release!r} of flavor {labels[f'{LABEL}.flavor']} is not configured in "
                             "this checkout")
    try:
        flavor = dataclasses.replace(flavor, eol=eol_mod.from_label(labels.get(f"{LABEL}.base.eol", "")))
    except eol_mod.EolError as e:
        raise LabelError(str(e)) from None
    user, uid, gid = labels[f"{LABEL}.ops"].split(":")
    arch = flavor.arch_for(platform)
    name = labels[f"{OCI}.base.name"]
    repo_ref = name.rsplit(":", 1)[0] if ":" in name.split("/")[-1] else name
    base = Base(name, repo_ref, labels[f"{OCI}.base.digest"], labels[f"{LABEL}.base.platform-digest"],
                labels.get(f"{LABEL}.base.standin-for", ""))
    gosu = Gosu(arch.gosu, labels[f"{LABEL}.gosu.version"], labels[f"{LABEL}.gosu.sha256"],
                labels.get(f"{LABEL}.gosu.source", "github"), labels.get(f"{LABEL}.gosu.trust-root", ""),
                _pinned(labels), labels.get(f"{LABEL}.gosu.go-version", ""),
                labels.get(f"{LABEL}.gosu.module-version", ""), labels.get(f"{LABEL}.gosu.expired-accepted", ""),
                tuple((k, v) for k, v in labels.items() if k.startswith(SOURCE_PREFIXES)))
    return ImagePlan(Target(flavor, arch), base, gosu,
                     Revision(labels[f"{OCI}.revision"], int(labels[f"{LABEL}.source-date-epoch"])),
                     labels[f"{OCI}.title"].rsplit(":", 1)[0], Account(user, int(uid), int(gid)),
                     labels[f"{OCI}.source"], labels[f"{LABEL}.inputs"], nss_wrapper_of(labels, arch.dpkg),
                     labels.get(VULNS, ""))


def _pinned(labels: dict[str, str]) -> bool:
    value = labels.get(f"{LABEL}.gosu.pinned")
    if value is not None:
        return value == "true"
    # Images made before the pinned label named an unpinned trust root only in the trial reasons.
    return not any(r.strip().startswith("gosu is trusted through key")
                   for r in labels.get(f"{LABEL}.trial", "").split(";"))
