"""What the image stage is asked for: flavors, their bases and arches, and the targets of one request."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from builder.image.assembly import append
from builder.core import arches
from builder.core.arches import Arch
from builder.core.refs import split_ref
from builder.config.settings import Flavor, ImageSettings

IMAGES = Path(__file__).resolve().parents[2] / "images"
LABEL = "org.base-gosu"


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
