"""The build stage: a verified gosu + the entrypoint on a digest-pinned base, per flavor and arch.

Each image is assembled (builder/append.py) from the base's layers as the
registry serves them, then loaded into the engine so it can run there.
Nothing runs inside the image while it is built.""" 

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.core import arches
from builder.build.assembly import append, load as loader
from builder.build.assembly.accounts import Account
from builder.core.arches import Arch
from builder.core.engine import Engine
from builder.gosu.fetch import Fetched
from builder.core.registry import Registry, RegistryError, credentials_for
from builder.build.assembly.store import Store
from builder.build.audit import goinfo

IMAGES = Path(__file__).resolve().parents[2] / "images"
LABEL = "org.base-gosu"


@dataclass(frozen=True)
class Flavor:
    name: str
    base: str          # the real upstream reference, e.g. ubuntu:24.04
    standin: str       # what the local registry holds instead, if not the real thing
    digest: str        # optional pin of the base's index digest
    release: str       # base release, used in tags (alpine-3.20)
    arches: tuple[str, ...]
    # (arch, platform) where the base's platform is not the arch's canonical one (ubuntu's armhf is arm/v7).
    platforms: tuple[tuple[str, arches.Platform], ...] = ()

    def platform_of(self, arch: Arch) -> arches.Platform:
        return dict(self.platforms).get(arch.dpkg, arch.platform)

    def arch_for(self, platform: str) -> Arch:
        """The flavor's arch whose image has this platform ('linux/arm/v7' is armhf on ubuntu, armv7 on alpine)."""
        for name in self.arches:
            a = arches.get(name, arches.IMAGE_ARCHES)
            if str(self.platform_of(a)) == platform:
                return a
        raise ValueError(f"flavor {self.name} has no {platform} image: its platforms are "
                         f"{', '.join(str(self.platform_of(arches.get(n, arches.IMAGE_ARCHES))) for n in self.arches)}")


@dataclass(frozen=True)
class ImageSettings:
    repository: str
    flavors: dict[str, Flavor]
    base_mirror: str
    use_standins: str     # "auto" (the real base where it resolves, else the stand-in), "true" or "false"
    ops_user: str
    ops_uid: int
    ops_gid: int
    source_url: str

    def _mirrored(self, name: str) -> str:
        return f"{self.base_mirror.rstrip('/')}/{name}" if self.base_mirror else name

    def base_ref(self, flavor: Flavor) -> str:
        """The first reference tried for a flavor's base."""
        return self.base_candidates(flavor)[0][0]

    def base_candidates(self, flavor: Flavor) -> list[tuple[str, bool]]:
        """(reference, is a stand-in) in the order they are tried."""
        real = [(self._mirrored(flavor.base), False)] + ([(flavor.base, False)] if self.base_mirror else [])
        standin = [(self._mirrored(flavor.standin), True)] if flavor.standin else []
        if self.use_standins == "true":
            return standin or real
        if self.use_standins == "false":
            return real
        return real + standin

    def tag(self, flavor: str, arch: str) -> str:
        return f"{self.repository}:{flavor}-{arch}"


@dataclass(frozen=True)
class Target:
    flavor: Flavor
    arch: Arch

    @property
    def name(self) -> str:
        return f"{self.flavor.name}-{self.arch.dpkg}"

    @property
    def platform(self) -> arches.Platform:
        return self.flavor.platform_of(self.arch)


@dataclass(frozen=True)
class Base:
    ref: str              # as configured (tag form)
    repo_ref: str         # registry/repo, what FROM uses with the digest
    index_digest: str     # what the tag pointed at
    digest: str           # the platform's own manifest digest (FROM ...@digest)
    standin_for: str = ""  # the real base this one stands in for ("" when it is the real base)

    @property
    def host(self) -> str:
        return split_ref(self.ref)[0]

    @property
    def repo(self) -> str:
        return split_ref(self.ref)[1]


@dataclass(frozen=True)
class Revision:
    """The checkout an image is built from: its commit, and the one timestamp every file and field gets."""
    commit: str
    epoch: int

    @property
    def created(self) -> str:
        return append.iso(self.epoch)


@dataclass(frozen=True)
class Built:
    target: Target
    tag: str
    image_id: str     # the config digest, which is also the engine's image ID once loaded
    gosu: Fetched
    base: Base
    inputs: str
    labels: dict
    image: append.Image
    store: Store

    @property
    def trial(self) -> str:
        return self.labels.get(f"{LABEL}.trial", "")


ALL = "all"


def plan(settings: ImageSettings, flavor_spec: str | None, arch_spec: str | None, default_arch: str) -> list[Target]:
    """Validate the whole request before anything is built. `arch_spec` "all": every arch of each flavor."""
    names = [f.strip() for f in (flavor_spec.split(",") if flavor_spec else settings.flavors) if f.strip()]
    unknown = [n for n in names if n not in settings.flavors]
    if unknown or not names:
        raise ValueError(f"unknown flavor {', '.join(unknown) or repr(flavor_spec)}: use one of {', '.join(settings.flavors)}")
    every = (arch_spec or "").strip().lower() == ALL
    wanted = [] if every else arches.parse_list(arch_spec, (default_arch,), arches.IMAGE_ARCHES)
    targets = []
    for n in names:
        flavor = settings.flavors[n]
        for a in (arches.parse_list(",".join(flavor.arches), table=arches.IMAGE_ARCHES) if every else wanted):
            if a.dpkg not in flavor.arches:
                raise ValueError(f"flavor {n} has no {a.dpkg} image: its base {flavor.base} exists only for "
                                 f"{', '.join(flavor.arches)}")
            targets.append(Target(flavor, a))
    return targets


def split_ref(ref: str) -> tuple[str, str, str]:
    """'alpine:3.20' -> (registry-1.docker.io, library/alpine, 3.20); 'h:5000/x/y:t' -> (h:5000, x/y, t)."""
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return "registry-1.docker.io", name if "/" in name else f"library/{name}", tag


def parse_ref(ref: str) -> tuple[str, str, str]:
    """(host, repo, tag or digest) of HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:..."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        host, repo, _ = split_ref(name)
        return host, repo, digest
    return split_ref(ref)


def resolve_base(settings: ImageSettings, flavor: Flavor, arch: Arch) -> Base:
    """The flavor's base for this arch, pinned by digest: the first candidate that resolves."""
    tried = []
    for ref, standin in settings.base_candidates(flavor):
        host, repo, tag = split_ref(ref)
        # A registry that is not there (no network, no mirror) is one quick miss, not a retried error.
        reg = Registry(host, credentials_for(host), retries=1, backoff=0.1, timeout=20)
        try:
            got = reg.get_manifest(repo, (flavor.digest if not standin else "") or tag)
        except RegistryError as e:
            tried.append(f"{ref}: {e}")
            continue
        if got is None:
            tried.append(f"{ref}: not found in {host}")
            continue
        return _platform_base(ref, got, flavor.platform_of(arch), flavor.base if standin else "")
    raise ValueError(f"cannot resolve a base for {flavor.name} {arch.dpkg}: " + "; ".join(tried) +
                     ". Offline? Run `invoke up` to seed the local registry (images.base_mirror)")


def _platform_base(ref: str, got: tuple[bytes, str, str], want: arches.Platform, standin_for: str) -> Base:
    body, media_type, digest = got
    doc = json.loads(body)
    repo_ref = ref.rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref
    if "manifests" not in doc:
        return Base(ref, repo_ref, digest, digest, standin_for)
    # arm/v6 and arm/v7 are different images of one base (alpine publishes both): the variant must match,
    # except that arm64's v8 is often left unsaid.
    for m in doc["manifests"]:
        p = m.get("platform", {})
        variant = p.get("variant") or ("v8" if p.get("architecture") == "arm64" else None)
        if (p.get("os"), p.get("architecture"), variant) == (want.os, want.architecture, want.variant):
            return Base(ref, repo_ref, digest, m["digest"], standin_for)
    raise MissingPlatform(ref, want)


class MissingPlatform(ValueError):
    """The base has no image for the platform: seeding (locally) or another base (elsewhere) can fix it."""
    def __init__(self, ref: str, platform: arches.Platform):
        super().__init__(f"base {ref} has no {platform} image")
        self.ref, self.platform = ref, platform


def trial_reasons(base: Base, gosu: Fetched) -> str:
    """Why an image may not leave this machine: its inputs that are not production ones ("" if none)."""
    reasons = []
    if base.standin_for:
        reasons.append(f"base {base.ref} is a stand-in for {base.standin_for}")
    if not gosu.pinned:
        reasons.append(f"gosu is trusted through key {gosu.trust_root}, which is not pinned in keys/")
    if gosu.detail("expired_accepted"):
        reasons.append(f"gosu came from an expired Debian archive Release, accepted with --accept-expired "
                       f"(expired_accepted: {gosu.detail('expired_accepted')})")
    return "; ".join(reasons)


def git_revision(root: Path, source_date_epoch: str | None = None) -> Revision:
    """The checkout's commit, and SOURCE_DATE_EPOCH if given, else the commit's time."""
    def git(*args):
        p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""
    commit = git("rev-parse", "HEAD") or "unknown"
    value = source_date_epoch if source_date_epoch not in (None, "") else git("log", "-1", "--format=%ct") or "0"
    if not value.isdigit():
        raise ValueError(f"SOURCE_DATE_EPOCH is {value!r}: give whole seconds since 1970 (e.g. `git log -1 "
                         "--format=%ct`), or unset it to use the commit's time")
    return Revision(commit, int(value))


def entrypoint_bytes(root: Path | None = None) -> bytes:
    return ((root or IMAGES.parent) / "images" / "entrypoint.sh").read_bytes()


def inputs_digest(settings: ImageSettings, target: Target, base: Base, gosu: Fetched,
                  entrypoint: bytes | None = None, gosu_data: bytes | None = None) -> str:
    """Everything that determines the image's content; equal digests mean nothing to push."""
    doc = {
        "base": base.digest, "gosu": gosu.sha256, "flavor": target.flavor.name, "arch": target.arch.dpkg,
        "gosu_source": [gosu.kind, gosu.trust_root, gosu.pinned], "trial": trial_reasons(base, gosu),
        "assembly": append.CODE,
        "entrypoint": hashlib.sha256(entrypoint if entrypoint is not None else entrypoint_bytes()).hexdigest(),
        "user": [settings.ops_user, settings.ops_uid, settings.ops_gid],
        # Already implied by gosu's sha256; its own key so that images published before these labels
        # existed count as changed and are rebuilt (with their SBOM and provenance), not reused.
        "gosu_build": list(gosu_build(gosu, gosu_data)),
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def image_labels(settings: ImageSettings, target: Target, base: Base, gosu: Fetched, inputs: str,
                 rev: Revision, gosu_data: bytes | None = None) -> dict[str, str]:
    """Every label an image carries, in one place: where each input came from and who vouched for it.

    They name every input, so `invoke reproduce` can rebuild the image from them.
    """
    labels = {
        "org.opencontainers.image.source": settings.source_url,
        "org.opencontainers.image.revision": rev.commit,
        "org.opencontainers.image.created": rev.created,
        "org.opencontainers.image.title": f"{settings.repository}:{target.flavor.name}",
        "org.opencontainers.image.base.name": base.ref,
        "org.opencontainers.image.base.digest": base.index_digest,
        f"{LABEL}.base.platform-digest": base.digest,
        f"{LABEL}.gosu.version": gosu.version,
        f"{LABEL}.gosu.sha256": gosu.sha256,
        f"{LABEL}.gosu.source": gosu.kind,
        f"{LABEL}.gosu.trust-root": gosu.trust_root,
        **dict(zip((f"{LABEL}.gosu.go-version", f"{LABEL}.gosu.module-version"), gosu_build(gosu, gosu_data))),
        f"{LABEL}.flavor": target.flavor.name,
        f"{LABEL}.ops": f"{settings.ops_user}:{settings.ops_uid}:{settings.ops_gid}",
        f"{LABEL}.source-date-epoch": str(rev.epoch),
        f"{LABEL}.inputs": inputs,
        f"{LABEL}.trial": trial_reasons(base, gosu),
    }
    if base.standin_for:
        labels[f"{LABEL}.base.standin-for"] = base.standin_for
    if gosu.detail("expired_accepted"):
        # Which archive evidence was past its Valid-Until; the trust root above is still Debian's key.
        labels[f"{LABEL}.gosu.expired-accepted"] = gosu.detail("expired_accepted")
    if gosu.kind == "debian":
        labels[f"{LABEL}.gosu.debian.suite"] = gosu.detail("suite")
        labels[f"{LABEL}.gosu.debian.package"] = gosu.detail("package")
    if gosu.kind == "rebuild":
        labels.update(rebuild_labels(gosu))
    return labels


def gosu_build(gosu: Fetched, data: bytes | None = None) -> tuple[str, str]:
    """(Go version, main module version) as gosu's own build information says: a pure function of its bytes.

    A binary built outside module mode (Debian's GOPATH builds) has no main
    module: its module version is "". One without build information at all
    (not a Go binary) has neither. `data`: gosu's bytes when they are at hand (else read from gosu.path).
    """
    try:
        info = goinfo.parse(data if data is not None else gosu_bytes(gosu), str(gosu.path))
    except goinfo.GoInfoError:
        return "", ""
    return info.go_version, info.main.version if info.main else ""


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


def recipe(settings: ImageSettings, target: Target, base: Base, gosu: Fetched, gosu_bytes: bytes, entrypoint: bytes,
           rev: Revision, labels: dict[str, str]) -> append.Recipe:
    return append.Recipe(
        base=append.BaseRef(base.host, base.repo, base.digest), gosu=gosu_bytes, entrypoint=entrypoint,
        account=Account(settings.ops_user, settings.ops_uid, settings.ops_gid, f"home/{settings.ops_user}"),
        epoch=rev.epoch, labels=labels,
        note=f"base-gosu: gosu {gosu.version}, entrypoint, user {settings.ops_user} "
             f"{settings.ops_uid}:{settings.ops_gid}")


def gosu_bytes(gosu: Fetched) -> bytes:
    data = gosu.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != gosu.sha256:
        raise ValueError(f"{gosu.path}: gosu {gosu.arch} changed since it was verified; run the build again")
    return data


def build(store: Store, settings: ImageSettings, target: Target, gosu: Fetched, rev: Revision,
          registry_for=None) -> Built:
    """Assemble one image (no engine involved); `load` puts images into the engine."""
    registry_for = registry_for or loader.registry_client({})
    base = resolve_base(settings, target.flavor, target.arch)
    inputs = inputs_digest(settings, target, base, gosu)
    labels = image_labels(settings, target, base, gosu, inputs, rev)
    r = recipe(settings, target, base, gosu, gosu_bytes(gosu), entrypoint_bytes(), rev, labels)
    try:
        image = append.assemble(r, store, registry_for(base.host))
    except RegistryError as e:
        raise ValueError(f"cannot read base {base.ref}@{base.digest[:19]}: {e}") from None
    tag = settings.tag(target.flavor.name, target.arch.dpkg)
    return Built(target, tag, image.config_digest, gosu, base, inputs, labels, image, store)


def load(engine: Engine, built: list[Built], registry_for=None) -> int:
    """Put built images into the engine under their tags; returns how many had to be loaded."""
    if not built:
        return 0
    return loader.load(engine, built[0].store, registry_for or loader.registry_client({}),
                       [(b.tag, b.image) for b in built])
