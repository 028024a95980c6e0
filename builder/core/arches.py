"""The one table of architectures: dpkg name -> OCI platform, Alpine name, ELF identity.

gosu names its release files by dpkg architecture, registries speak OCI
platforms, Alpine has its own names and the kernel only trusts the ELF
header. Everything that converts between them reads this table.

Images have one arch more than gosu: Alpine publishes 32-bit ARM twice
(armhf for ARMv6, armv7), and gosu's armhf build, made for ARMv6, serves
both. Image arches are named like gosu's where they are the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

# ELF e_ident[EI_CLASS] / e_ident[EI_DATA] values.
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    def as_oci(self) -> dict:
        """The `platform` object of an OCI descriptor or config."""
        return {"architecture": self.architecture, "os": self.os, **({"variant": self.variant} if self.variant else {})}


@dataclass(frozen=True)
class Arch:
    dpkg: str
    # The first platform is the canonical one; armhf also serves arm/v7,
    # because upstream builds it for ARMv6, which v7 cores run.
    platforms: tuple[Platform, ...]
    alpine: str | None
    elf_machine: int
    elf_class: int
    elf_data: int
    # The gosu build an image of this arch carries, when it is not its own.
    serves_from: str = ""

    @property
    def gosu(self) -> str:
        """The dpkg arch of the gosu binary this arch runs."""
        return self.serves_from or self.dpkg

    @property
    def platform(self) -> Platform:
        return self.platforms[0]

    @property
    def release_file(self) -> str:
        return f"gosu-{self.gosu}"


def _p(spec: str) -> Platform:
    return Platform(*spec.split("/"))


ARCHES: tuple[Arch, ...] = (
    Arch("amd64", (_p("linux/amd64"),), "x86_64", 62, ELFCLASS64, ELFDATA2LSB),
    Arch("arm64", (_p("linux/arm64/v8"),), "aarch64", 183, ELFCLASS64, ELFDATA2LSB),
    Arch("armel", (_p("linux/arm/v5"),), None, 40, ELFCLASS32, ELFDATA2LSB),
    Arch("armhf", (_p("linux/arm/v6"), _p("linux/arm/v7")), "armhf", 40, ELFCLASS32, ELFDATA2LSB),
    Arch("i386", (_p("linux/386"),), "x86", 3, ELFCLASS32, ELFDATA2LSB),
    Arch("mips64el", (_p("linux/mips64le"),), None, 8, ELFCLASS64, ELFDATA2LSB),
    Arch("ppc64el", (_p("linux/ppc64le"),), "ppc64le", 21, ELFCLASS64, ELFDATA2LSB),
    Arch("riscv64", (_p("linux/riscv64"),), "riscv64", 243, ELFCLASS64, ELFDATA2LSB),
    Arch("s390x", (_p("linux/s390x"),), "s390x", 22, ELFCLASS64, ELFDATA2MSB),
)

# Image arches gosu has no release file of its own for.
IMAGE_ONLY: tuple[Arch, ...] = (
    Arch("armv7", (_p("linux/arm/v7"),), "armv7", 40, ELFCLASS32, ELFDATA2LSB, serves_from="armhf"),
)
IMAGE_ARCHES = ARCHES + IMAGE_ONLY

BY_DPKG = {a.dpkg: a for a in ARCHES}
NAMES = tuple(BY_DPKG)

# `uname -m` inside a container of that arch (what smoke tests compare).
UNAME = {
    "amd64": "x86_64", "arm64": "aarch64", "armel": "armv5tel", "armhf": "armv7l",
    "i386": "i686", "mips64el": "mips64", "ppc64el": "ppc64le", "riscv64": "riscv64",
    "s390x": "s390x", "armv7": "armv7l",
}


# GOARCH of the gosu each arch carries (what `gosu --version` reports after "linux/").
GOARCH = {
    "amd64": "amd64", "arm64": "arm64", "armel": "arm", "armhf": "arm", "armv7": "arm", "i386": "386",
    "mips64el": "mips64le", "ppc64el": "ppc64le", "riscv64": "riscv64", "s390x": "s390x",
}


class UnknownArch(ValueError):
    pass


def get(name: str, table: tuple[Arch, ...] = ARCHES) -> Arch:
    """Look up by dpkg name, accepting OCI and Alpine spellings too (gosu's arches unless `table` says)."""
    key = name.strip().lower()
    for arch in table:
        if key == arch.dpkg:
            return arch
    for arch in table:
        if key == arch.alpine or any(key in (str(p), p.architecture) for p in arch.platforms):
            return arch
    raise UnknownArch(
        f"unknown architecture {name!r}: use one of {', '.join(a.dpkg for a in table)}"
    )


def parse_list(spec: str | None, default: tuple[str, ...] = NAMES, table: tuple[Arch, ...] = ARCHES) -> list[Arch]:
    """Parse 'amd64,arm64' (or None for the default) into Arch entries, deduplicated."""
    names = [s for s in (spec.split(",") if spec else default) if s.strip()]
    if not names:
        raise UnknownArch(f"empty architecture list {spec!r}: use one of {', '.join(a.dpkg for a in table)}")
    out: list[Arch] = []
    for n in names:
        a = get(n, table)
        if a not in out:
            out.append(a)
    return out


def parse_platform(spec: str) -> Platform:
    """'linux/arm/v7' -> Platform; refuses what is not os/architecture[/variant]."""
    parts = spec.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UnknownArch(f"platform {spec!r} is not os/architecture[/variant], e.g. linux/arm/v7")
    return Platform(*parts)
