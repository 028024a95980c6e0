"""nss_wrapper for the glibc images, taken from Debian's archive through the project's own chain.

Under an arbitrary uid with no passwd entry (OpenShift's `--user 4242:0`)
the entrypoint names the uid through nss_wrapper, an LD_PRELOAD library
that reads a passwd copy it writes where it can; nothing in /etc has to
become writable by group 0. The library is Debian's `libnss-wrapper`: its
version and .deb sha256 are pinned per dpkg arch in configuration
(images.nss_wrapper), the .deb is taken only if a Packages index that an
InRelease signed by a pinned archive key lists carries it with exactly that
sha256, and only verified .debs are kept in the cache (by sha256). A later
run finds the pinned .deb there, checks its bytes again and downloads
nothing. Each arch is fetched once per run, when the run is planned.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
from dataclasses import dataclass, field

from builder.core.errors import BuilderError
from builder.gosu.download import Cache, DownloadError, Source, make_session
from builder.gosu.signature import PinnedKeyError, VerificationError, pinned_keyring
from builder.gosu.sources import archive as deb_archive, deb
from builder.gosu.sources.archive import Archive
from builder.gosu.sources.packages import Session, binary_file
from builder.config.settings import Pin
from builder.config.settings import NssSettings

# Debian's multiarch tuples: the package installs the library under /usr/lib/<tuple>/.
MULTIARCH = {
    "amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "armel": "arm-linux-gnueabi",
    "armhf": "arm-linux-gnueabihf", "i386": "i386-linux-gnu", "ppc64el": "powerpc64le-linux-gnu",
    "riscv64": "riscv64-linux-gnu", "s390x": "s390x-linux-gnu",
}


class NssWrapperError(BuilderError):
    """nss_wrapper could not be had for an arch; the message names the package, the arch and what to do."""


@dataclass(frozen=True)
class NssWrapper:
    """The library an image carries: enough to fetch the same bytes again and to name them in an SBOM."""
    arch: str          # dpkg arch
    package: str
    version: str
    sha256: str        # of the library itself
    deb_sha256: str
    suite: str
    data: bytes = field(default=b"", compare=False, repr=False)

    @property
    def pin(self) -> Pin:
        return Pin(self.version, self.deb_sha256, self.suite)

    @property
    def purl(self) -> str:
        return f"pkg:deb/debian/{self.package}@{self.version}?arch={self.arch}"


def member(arch: str) -> str:
    return f"/usr/lib/{MULTIARCH[arch]}/libnss_wrapper.so"


def fetch(settings: NssSettings, arches: list[str], log=sys.stderr) -> dict[str, NssWrapper]:
    """The pinned library for each arch: from the cache of verified .debs, else through the signed chain."""
    missing = [a for a in arches if a not in settings.pins or a not in MULTIARCH]
    if missing:
        raise NssWrapperError(f"{settings.package}: no pinned package for {', '.join(missing)} "
                              f"(images.nss_wrapper.pins); add its version, suite and .deb sha256, or drop the "
                              f"arch's flavor from images.nss_wrapper.flavors")
    return get(settings, {a: settings.pins[a] for a in dict.fromkeys(arches)}, log)


def get(settings: NssSettings, pins: dict[str, Pin], log=sys.stderr) -> dict[str, NssWrapper]:
    """The library for each (arch, pin), also for pins an image's labels name (`invoke reproduce`)."""
    cache = Cache(settings.cache_dir)
    debs = {a: _cached(cache, p.deb_sha256) for a, p in pins.items()}
    todo = {a: p for a, p in pins.items() if debs[a] is None}
    if todo:
        debs.update(_download(settings, cache, todo, log))
    return {a: _library(settings.package, a, p, debs[a]) for a, p in pins.items()}


def _cached(cache: Cache, sha256: str) -> bytes | None:
    try:
        data = cache.blob(sha256).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _library(package: str, arch: str, pin: Pin, data: bytes) -> NssWrapper:
    try:
        lib = deb.extract(data, member(arch))
    except deb.DebError as e:
        raise NssWrapperError(f"{package} {pin.version} ({arch}): the .deb {e}; pin a build that ships "
                              f"the library at {member(arch)}") from None
    return NssWrapper(arch, package, pin.version, hashlib.sha256(lib).hexdigest(), pin.deb_sha256, pin.suite, lib)


def _download(settings: NssSettings, cache: Cache, pins: dict[str, Pin], log) -> dict[str, bytes]:
    stage = cache.staging()
    out, arch = {}, ""
    try:
        (first, fpr), *more = settings.archive_keys
        with pinned_keyring(first, fpr, *more) as keyring:
            repo = Archive(Source(settings.mirror), make_session(settings.retries, settings.backoff), settings.timeout)
            s = Session(repo, keyring, cache, stage, io.StringIO())
            for arch, pin in pins.items():
                out[arch] = _verified_deb(settings.package, s, arch, pin)
                log.write(f"nss_wrapper: {settings.package} {pin.version} ({arch}) from {pin.suite}, verified "
                          f"InRelease by {s.release(pin.suite).signer}, Packages, .deb "
                          f"{pin.deb_sha256[:16]}...\n")
    except (PinnedKeyError, VerificationError, DownloadError) as e:
        where = f" ({arch})" if arch else ""
        raise NssWrapperError(f"{settings.package}{where} could not be taken from Debian's archive: {e}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def _verified_deb(package: str, s: Session, arch: str, pin: Pin) -> bytes:
    relpath = f"main/binary-{arch}/Packages"
    index, _ = s.index(pin.suite, relpath)
    listed = deb_archive.packages_named(index, package, arch)
    stanzas = [st for st in listed if st.get("Version") == pin.version]
    if not stanzas:
        have = ", ".join(st.get("Version", "?") for st in listed) or "(none)"
        raise NssWrapperError(f"{package} ({arch}): dists/{pin.suite} carries {have}, not the pinned "
                              f"{pin.version}; review the new package and update images.nss_wrapper.pins.{arch}")
    f = binary_file(s, pin.suite, relpath, stanzas[0])
    if f.sha256 != pin.deb_sha256:
        raise NssWrapperError(f"{package} {pin.version} ({arch}): the signed index of {pin.suite} lists "
                              f"{f.filename} with sha256 {f.sha256}, but images.nss_wrapper.pins.{arch} pins "
                              f"{pin.deb_sha256}; refusing it (check which is right before changing the pin)")
    return s.get(f).read_bytes()   # checked against the index's sha256 and size, then cached by it
