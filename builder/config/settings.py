"""The typed, frozen settings configuration parses into and hands each stage.

They live with configuration, below every stage: a stage imports its
settings from here and never reads configuration itself, and configuration
imports nothing above `core` to build them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from builder.core import arches
from builder.core.arches import Arch
from builder.config.eol import Eol

# How a Debian stand-in tree is made: by the host's tools with DPKG_ROOT (no emulator), or under qemu.
CHROOTLESS, EMULATED = "chrootless", "emulated"
DEBIAN_MODES = (CHROOTLESS, EMULATED)
# Where gosu comes from (--source).
GITHUB, DEBIAN, REBUILD = "github", "debian", "rebuild"
KINDS = (GITHUB, DEBIAN, REBUILD)
# The engines smoke checks run under.
ENGINE_KINDS = ("docker", "podman", "podman-rootless", "docker-userns")


@dataclass(frozen=True)
class LocalSettings:
    state_dir: Path
    registry_port: int
    arches: tuple[str, ...]
    debian_mirror: str
    # (flavor-release, suite): the Debian suite each Debian-derived stand-in is bootstrapped from.
    standin_suites: tuple[tuple[str, str], ...]
    # (arch, suite) where the arch's Debian stand-in comes from another suite (bookworm has no riscv64).
    debian_suites: tuple[tuple[str, str], ...]
    debian_bootstrap: str    # mmdebstrap or debootstrap
    debian_mode: str         # CHROOTLESS or EMULATED
    emulation_fallback: tuple[str, ...]   # all, SUITE or SUITE/ARCH: where a chrootless refusal is made emulated
    alpine_dir: Path
    alpine_version: str
    alpine_seed: str  # repo:tag
    seed_jobs: int  # children of one base made at once (Debian bootstraps run under qemu, one core each)

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    def standin_suite(self, key: str) -> str:
        """The Debian suite the stand-in of `key` (flavor-release) comes from ("" when none is configured)."""
        return dict(self.standin_suites).get(key, "")

    def suite_for(self, suite: str, arch: str) -> str:
        """`suite`, unless local.debian_suites sends this arch elsewhere (a suite that does not build it)."""
        return dict(self.debian_suites).get(arch, suite)


@dataclass(frozen=True)
class EngineSettings:
    kind: str = "docker"
    state_dir: Path = Path(".cache/engines")
    rootless_user: str = "bgrootless"
    userns_dir: Path = Path("/run/bg-userns")
    userns_data: Path = Path("/var/lib/bg-userns")


@dataclass(frozen=True)
class Pin:
    """A reviewed .deb: the package version and the sha256 of its file, as configuration pins it."""
    version: str       # the Debian package version
    deb_sha256: str
    suite: str = ""    # the suite whose signed Packages index lists it (empty: the user's configured suite)


@dataclass(frozen=True)
class Tool:
    name: str
    package: str
    member: str                   # path of the binary inside the package
    pins: dict[str, Pin]          # dpkg arch -> pin


@dataclass(frozen=True)
class ToolSettings:
    dir: Path
    mirror: str
    suite: str
    archive_keys: tuple[tuple[Path, str], ...]
    tools: dict[str, Tool]
    timeout: float = 60
    retries: int = 4
    backoff: float = 0.5


@dataclass(frozen=True)
class NssSettings:
    cache_dir: Path
    mirror: str
    archive_keys: tuple[tuple[Path, str], ...]
    package: str
    flavors: tuple[str, ...]      # the flavors whose images carry it (glibc bases with shadow-utils accounts)
    pins: dict[str, Pin]          # dpkg arch -> pin
    timeout: float = 60
    retries: int = 4
    backoff: float = 0.5
    without: tuple[str, ...] = ()  # images (<flavor>-<release>-<arch>) whose glibc is older than their arch's pin needs

    def wanted(self, target) -> bool:
        return target.flavor.name in self.flavors and target.name not in self.without


@dataclass(frozen=True)
class Destination:
    registry: str      # host[:port]
    repository: str    # org/base-gosu
    local: bool = False  # the project's own registry that `invoke up` runs: trial images may go there

    def ref(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}{'@' if tag.startswith('sha256:') else ':'}{tag}"


@dataclass(frozen=True)
class Trust:
    keys: tuple[str, ...] = ()   # public key files or KMS URIs; any one of them may have signed (rotation)
    identity: str = ""           # keyless: certificate identity regexp
    issuer: str = ""             # keyless: OIDC issuer
    # HOST/REPO a signature may name besides the image's own repository: where a mirror's copy was signed.
    origins: tuple[str, ...] = ()

    def flag_sets(self) -> list[list[str]]:
        if self.keys:
            return [["--key", k, "--insecure-ignore-tlog=true"] for k in self.keys]
        return [["--certificate-identity-regexp", self.identity, "--certificate-oidc-issuer", self.issuer]]

    def describe(self) -> str:
        return f"key(s) {', '.join(self.keys)}" if self.keys else f"identity {self.identity} from {self.issuer}"


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
    # flavor -> where its releases' end-of-life dates are looked up (eol.lookup's spec, e.g. debian).
    eol_from: dict[str, str] = field(default_factory=dict)
    # flavor -> release: local.default_releases where bases come through the local registry.
    local_defaults: dict[str, str] = field(default_factory=dict)

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
class FetchOptions:
    version: str
    arches: tuple[Arch, ...]
    mirror: str                                    # a URL or a directory: where `kind` is read from
    key_file: Path
    fingerprint: str
    cache_dir: Path
    lock: object | None   # a builder.gosu.lock.Lock, read by the wiring (None: the lock not enforced)
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    parallel: int = 9
    # github: tianon's release at `mirror`, trusted through key_file/fingerprint.
    # debian: Debian's archive at `mirror`, `suite`, trusted through archive_keys.
    # rebuild: gosu's source from `suite` of that archive, the Go toolchain and
    # dependency sources from `suites`, compiled here (sources/rebuild.py).
    kind: str = GITHUB
    suite: str = ""
    archive_keys: tuple[tuple[Path, str], ...] = ()
    suites: tuple[str, ...] = ()
    go: str = ""                                   # "1.NN"; empty: the newest the suites carry
    modules: tuple[tuple[str, str], ...] = ()      # Go module path -> Debian -dev package
    host_arch: str = ""
    # debian and rebuild: suites whose InRelease may be past its Valid-Until (a stale mirror, a snapshot).
    # Taken only when named here; what comes from them says so (detail expired_accepted) and is a trial input.
    accept_expired: tuple[str, ...] = ()
    # Why this source was chosen when the request said `auto` (printed once).
    chosen_because: str = ""
