"""gosu from Debian's archive: InRelease -> Packages -> gosu_<version>_<arch>.deb -> /usr/sbin/gosu.

The chain is checked link by link (sources/archive.py) against Debian's
archive keys pinned in keys/debian-archive/; then the ELF check and the lock,
as for tianon's release. Only verified files reach the cache. A cached
binary is used again only after its InRelease signature, the index that
vouched for its package, the package's bytes and the binary inside it are
all checked once more, with no network.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from builder.core.arches import Arch
from builder.gosu.download import Cache, DownloadError, Source, make_session
from builder.gosu.signature import Keyring, VerificationError, check_elf, is_project_key, sha256_file
from builder.gosu.sources import archive as deb_archive, deb
from builder.gosu.sources.archive import Archive, Release
from builder.gosu.sources.model import DEBIAN, FetchOptions, FetchReport, Fetched, with_archive_keys

BINARY = "/usr/sbin/gosu"
PACKAGE = "gosu"


@dataclass(frozen=True)
class DebRecord:
    """What was verified, with the evidence needed to check it again offline."""
    sha256: str             # the gosu binary
    size: int
    deb_sha256: str
    deb_size: int
    package_version: str
    filename: str           # pool/... path in the archive
    index: str              # e.g. main/binary-amd64/Packages.xz, as listed in InRelease
    index_sha256: str
    inrelease_sha256: str   # the InRelease file, kept in the cache
    signer: str
    source: str             # where the .deb came from
    built_using: str = ""   # the Go toolchain and sources it was built with, as Debian records them


def fetch(opts: FetchOptions, log=sys.stderr) -> FetchReport:
    cache = Cache(opts.cache_dir)
    return with_archive_keys(opts, lambda keyring, report: _fetch_all(opts, cache, keyring, report, log))


def _cache_key(opts: FetchOptions) -> str:
    return f"debian-{opts.suite}-{opts.version}"


def _pinned_package(opts: FetchOptions, arch: str) -> str | None:
    """The package version the lock pins for this suite, gosu version and arch (None: not locked)."""
    d = opts.lock.debian if opts.lock else None
    if d and d.suite == opts.suite and d.version == opts.version and arch in d.arches:
        return d.arches[arch].package_version
    return None


def _fetch_all(opts: FetchOptions, cache: Cache, keyring: Keyring, report: FetchReport, log) -> None:
    missing = report.take_cached(opts.arches,
                                 lambda a: _from_cache(opts, cache, keyring, a, report) if opts.version else None)
    if not missing:
        return
    session = make_session(opts.retries, opts.backoff)
    repo = Archive(Source(opts.mirror), session, opts.timeout)
    stage = cache.staging()
    try:
        try:
            release, inrelease = deb_archive.fetch_release(repo, opts.suite, keyring, stage,
                                                           accept_expired=opts.accept_expired)
        except (DownloadError, VerificationError) as e:
            report.fail_all(missing, e)
            return
        log.write(f"fetch: {opts.mirror} dists/{opts.suite}/InRelease: good signature by pinned archive key "
                  f"{release.signer}" + (f"; EXPIRED on {release.valid_until:%Y-%m-%d}, accepted as asked (trial)"
                                         if release.accepted_expired else "") + "\n")
        report.collect(missing, opts.parallel,
                       lambda a: _fetch_one(opts, cache, repo, keyring, release, inrelease, stage, a))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _choose(opts: FetchOptions, stanzas: list[dict[str, str]], arch: str) -> dict[str, str]:
    where = f"{opts.suite}'s main/binary-{arch}/Packages"
    if not stanzas:
        raise VerificationError(f"{PACKAGE}:{arch}", "no package",
                                f"{where} has no {PACKAGE} package; choose a suite that builds it for {arch} "
                                "(--suite) or another source")
    newest = sorted(stanzas, key=_Version, reverse=True)
    pinned = _pinned_package(opts, arch)
    if pinned:
        exact = [s for s in newest if s.get("Version") == pinned]
        if not exact:
            raise VerificationError(
                f"{PACKAGE}:{arch}", "lock mismatch",
                f"{where} carries {PACKAGE} {newest[0].get('Version')}, but the lock file pins {pinned}; review "
                f"the new package, then run `invoke lock --source debian --suite {opts.suite}`")
        return exact[0]
    if opts.version:
        matching = [s for s in newest if deb_archive.upstream_version(s.get("Version", "")) == opts.version]
        if not matching:
            raise VerificationError(
                f"{PACKAGE}:{arch}", "no package",
                f"{where} has {PACKAGE} {', '.join(s.get('Version', '?') for s in newest)}, not gosu "
                f"{opts.version}; pass --version {deb_archive.upstream_version(newest[0].get('Version', ''))} "
                "or another --suite")
        return matching[0]
    return newest[0]


class _Version:
    def __init__(self, stanza: dict[str, str]):
        self.v = stanza.get("Version", "")

    def __lt__(self, other: "_Version") -> bool:
        return deb_archive.compare_versions(self.v, other.v) < 0


def _fetch_one(opts: FetchOptions, cache: Cache, repo: Archive, keyring: Keyring, release: Release,
               inrelease: Path, stage: Path, arch: Arch) -> Fetched:
    mine = stage / arch.dpkg
    mine.mkdir()
    index, index_name = deb_archive.fetch_index(repo, release, f"main/binary-{arch.dpkg}/Packages", mine)
    stanza = _choose(opts, deb_archive.packages_named(index, PACKAGE, arch.dpkg), arch.dpkg)
    filename = stanza.get("Filename", "")
    try:
        expected = (stanza["SHA256"].lower(), int(stanza["Size"]))
    except (KeyError, ValueError):
        raise VerificationError(filename or PACKAGE, "malformed index",
                                f"the {PACKAGE} stanza of {index_name} has no SHA256 or Size") from None
    name = filename.rsplit("/", 1)[-1]
    if not filename.startswith("pool/") or ".." in filename.split("/"):
        raise VerificationError(filename, "malformed index", "Filename is not a path below pool/")
    deb_path = repo.get(filename, mine / name)
    deb_sha = deb_archive.check_listed(deb_path, name, expected, f"dists/{opts.suite}/{index_name}")
    binary = mine / "gosu"
    binary.write_bytes(_extract(deb_path.read_bytes(), name))
    check_elf(binary, arch, f"{name}:{BINARY}")
    digest, size = sha256_file(binary), binary.stat().st_size
    version = deb_archive.upstream_version(stanza["Version"])
    locked = _check_lock(opts, arch, version, stanza["Version"], deb_sha, digest, size)
    # Only now does anything reach the cache; the record is written last.
    cache.store_blob(inrelease, release.sha256)
    cache.store_blob(deb_path, deb_sha)
    path = cache.store_blob(binary, digest)
    rec = DebRecord(digest, size, deb_sha, expected[1], stanza["Version"], filename, index_name,
                    release.files[index_name][0], release.sha256, release.signer, repo.source.location(filename),
                    stanza.get("Built-Using", ""))
    cache.write(keyring.fingerprint, f"debian-{opts.suite}-{version}", arch.dpkg, rec)
    return _fetched(opts, arch, rec, path, False, locked, release.expired_marker)


def _extract(data: bytes, name: str) -> bytes:
    try:
        return deb.extract(data, BINARY)
    except deb.DebError as e:
        raise VerificationError(name, "not a gosu package", str(e)) from None


def _check_lock(opts: FetchOptions, arch: Arch, version: str, package: str, deb_sha: str, sha: str,
                size: int) -> bool:
    d = opts.lock.debian if opts.lock else None
    if not d or d.suite != opts.suite or d.version != version:
        return False
    return d.check(arch.dpkg, package, deb_sha, sha, size)


def _from_cache(opts: FetchOptions, cache: Cache, keyring: Keyring, arch: Arch,
                report: FetchReport) -> Fetched | None:
    """A cached binary, after checking every link of its chain again from the cached evidence.

    The InRelease is checked at this moment with this run's accept_expired: a
    binary taken from a suite accepted expired is not served to a run that
    does not accept it (nor evicted: the evidence is intact).
    """
    rec = cache.read(keyring.fingerprint, _cache_key(opts), arch.dpkg, DebRecord)
    if rec is None:
        return None
    pinned = _pinned_package(opts, arch.dpkg)
    if pinned and pinned != rec.package_version:
        return None
    name = rec.filename.rsplit("/", 1)[-1]
    try:
        blobs = [cache.blob(d) for d in (rec.sha256, rec.deb_sha256, rec.inrelease_sha256)]
        if not all(b.is_file() for b in blobs):
            raise VerificationError(name, "cache damaged", "a verified file is gone from the cache")
        for blob, want in zip(blobs, (rec.sha256, rec.deb_sha256, rec.inrelease_sha256)):
            if sha256_file(blob) != want:
                raise VerificationError(name, "cache modified",
                                        f"cached copy {blob} was modified on disk after it was verified")
        release = deb_archive.release_from(blobs[2], opts.suite, keyring, dt.datetime.now(dt.timezone.utc),
                                           opts.accept_expired)
        if release.files.get(rec.index, ("",))[0] != rec.index_sha256:
            raise VerificationError(rec.index, "cache modified", "the cached InRelease does not list this index")
        if deb.extract(blobs[1].read_bytes(), BINARY) != blobs[0].read_bytes():
            raise VerificationError(name, "cache modified", "the cached binary is not the one in the package")
        check_elf(blobs[0], arch, f"{name}:{BINARY}")
        locked = _check_lock(opts, arch, opts.version, rec.package_version, rec.deb_sha256, rec.sha256, rec.size)
    except (VerificationError, deb.DebError) as e:
        if getattr(e, "reason", "") == "expired Release":
            return None  # not accepted by this run: the network decides (a fresh mirror, or the refusal)
        cache.evict(keyring.fingerprint, _cache_key(opts), arch.dpkg, rec)
        report.warnings.append(f"{arch.dpkg}: {e}; evicted it from the cache and fetching again")
        return None
    return _fetched(opts, arch, rec, blobs[0], True, locked, release.expired_marker)


def _fetched(opts: FetchOptions, arch: Arch, rec: DebRecord, path: Path, from_cache: bool, locked: bool,
             expired_accepted: str = "") -> Fetched:
    key_file = dict((fpr, f) for f, fpr in opts.archive_keys).get(rec.signer)
    details = (("suite", opts.suite), ("package", rec.package_version), ("deb", rec.filename),
               ("deb_sha256", rec.deb_sha256), ("deb_size", str(rec.deb_size)))
    if rec.built_using:
        details += (("built_using", rec.built_using),)
    if expired_accepted:
        details += (("expired_accepted", expired_accepted),)
    return Fetched(arch.dpkg, deb_archive.upstream_version(rec.package_version), rec.sha256, rec.size, path,
                   from_cache, False, locked, rec.source, kind=DEBIAN, trust_root=rec.signer,
                   pinned=bool(key_file) and is_project_key(key_file, rec.signer), details=details)
