"""What the image stage is asked for: flavors, their bases and arches, and the targets of one request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.image.assembly import append
from builder.core import arches
from builder.core.arches import Arch
from builder.core.refs import split_ref

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


ALL = "all"


def select_targets(settings: ImageSettings, flavor_spec: str | None, arch_spec: str | None, default_arch: str) -> list[Target]:
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
