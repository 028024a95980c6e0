"""What the image stage is asked for: flavors, their bases and arches, and the targets of one request."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from builder.image.assembly import append
from builder.core import arches
from builder.core.arches import Arch
from builder.core.refs import split_ref
from builder.image.eol import Eol

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
    eol: Eol | None = None   # the release's end of life (None: not known or not announced)
    default: bool = True     # the flavor's default release: the floating tag <flavor> follows it

    @property
    def key(self) -> str:
        """flavor-release (minideb-trixie): what tells two releases of a flavor apart."""
        return f"{self.name}-{self.release}"

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
    # Every configured release of each flavor (flavor -> release -> Flavor); `flavors` holds the defaults.
    releases: dict[str, dict[str, Flavor]] = field(default_factory=dict)

    def _mirrored(self, name: str) -> str:
        return f"{self.base_mirror.rstrip('/')}/{name}" if self.base_mirror else name

    def base_candidates(self, flavor: Flavor) -> list[tuple[str, bool]]:
        """(reference, is a stand-in) in the order they are tried."""
        real = [(self._mirrored(flavor.base), False)] + ([(flavor.base, False)] if self.base_mirror else [])
        standin = [(self._mirrored(flavor.standin), True)] if flavor.standin else []
        if self.use_standins == "true":
            return standin or real
        if self.use_standins == "false":
            return real
        return real + standin

    def tag(self, flavor: str, arch: str, release: str = "") -> str:
        """The local image's name: <repository>:<flavor>-<release>-<arch> (the default release's when not given)."""
        return f"{self.repository}:{flavor}-{release or self.flavors[flavor].release}-{arch}"


@dataclass(frozen=True)
class Target:
    flavor: Flavor
    arch: Arch

    @property
    def name(self) -> str:
        """minideb-trixie-amd64: two releases of a flavor never share a local image name."""
        return f"{self.flavor.key}-{self.arch.dpkg}"

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


ALL = "all"


def select_releases(settings: ImageSettings, name: str, release_spec: str | None, today: dt.date | None
                    ) -> list[Flavor]:
    """The flavor's releases a request names: its default (none named), every supported one (`all`: those not
    past their end of life on `today`; an EOL release must be named), or the named ones it has."""
    every = settings.releases.get(name) or {settings.flavors[name].release: settings.flavors[name]}
    spec = (release_spec or "").strip()
    if not spec:
        return [settings.flavors[name]]
    if spec.lower() == ALL:
        return [f for f in every.values() if not (today and f.eol and f.eol.past(today))]
    return [every[r] for r in (r.strip() for r in spec.split(",")) if r in every]


def select_targets(settings: ImageSettings, flavor_spec: str | None, arch_spec: str | None, default_arch: str,
                   release_spec: str | None = None, today: dt.date | None = None) -> list[Target]:
    """Validate the whole request before anything is built. `arch_spec` "all": every arch of each release;
    `release_spec`: R,.. or all (see select_releases; default: each flavor's default release)."""
    names = [f.strip() for f in (flavor_spec.split(",") if flavor_spec else settings.flavors) if f.strip()]
    unknown = [n for n in names if n not in settings.flavors]
    if unknown or not names:
        raise ValueError(f"unknown flavor {', '.join(unknown) or repr(flavor_spec)}: use one of {', '.join(settings.flavors)}")
    named = [r.strip() for r in (release_spec or "").split(",") if r.strip() and r.strip().lower() != ALL]
    have = {r for n in names for r in (settings.releases.get(n) or {settings.flavors[n].release: None})}
    missing = [r for r in named if r not in have]
    if missing:
        known = "; ".join(f"{n}: {', '.join(settings.releases.get(n) or [settings.flavors[n].release])}"
                          for n in names)
        raise ValueError(f"unknown release {', '.join(missing)} (--release): the releases configured are {known}")
    every = (arch_spec or "").strip().lower() == ALL
    wanted = [] if every else arches.parse_list(arch_spec, (default_arch,), arches.IMAGE_ARCHES)
    targets = []
    for n in names:
        for flavor in select_releases(settings, n, release_spec, today):
            for a in (arches.parse_list(",".join(flavor.arches), table=arches.IMAGE_ARCHES) if every else wanted):
                if a.dpkg not in flavor.arches:
                    raise ValueError(f"flavor {n} {flavor.release} has no {a.dpkg} image: its base {flavor.base} "
                                     f"exists only for {', '.join(flavor.arches)}")
                targets.append(Target(flavor, a))
    if not targets:
        raise ValueError(f"no release to build: every release of {', '.join(names)} asked for (--release "
                         f"{release_spec}) is past its end of life; name one to build it anyway")
    return targets
