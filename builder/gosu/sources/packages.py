"""Files out of Debian's archive, each vouched for by a signed index: the shared plumbing of every archive user.

A Session fetches each suite's InRelease and each index at most once per run
(sources/archive.py checks them), and hands out package files only after
their sha256 and size match the index that lists them; verified files are
kept in the cache by sha256 and taken from there next time, after their bytes
are checked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.gosu.download import Cache
from builder.gosu.signature import Keyring, VerificationError, sha256_file
from builder.gosu.sources import archive as deb_archive
from builder.gosu.sources.archive import Archive, Release


@dataclass(frozen=True)
class ArchiveFile:
    """A file the archive vouched for, and through which signed index."""
    name: str          # package name, or the orig tarball's name
    version: str       # the Debian (source or binary) package version
    filename: str      # pool/... path
    sha256: str
    size: int
    suite: str
    index: str         # the index that lists it, as InRelease names it (e.g. main/source/Sources.xz)


@dataclass(frozen=True)
class Evidence:
    """One suite's InRelease (kept in the cache) and the digest it lists for an index we used."""
    suite: str
    inrelease_sha256: str
    index: str
    index_sha256: str


class Session:
    """The verified Releases and indexes of one run, each fetched at most once."""

    def __init__(self, repo: Archive, keyring: Keyring, cache: Cache, stage: Path, log,
                 accept_expired: tuple[str, ...] = ()):
        self.repo, self.keyring, self.cache, self.stage, self.log = repo, keyring, cache, stage, log
        self.accept_expired = accept_expired  # suites that may be past their Valid-Until (marked, trial)
        self.releases: dict[str, Release] = {}
        self.indexes: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.evidence: dict[tuple[str, str], Evidence] = {}

    def release(self, suite: str) -> Release:
        if suite not in self.releases:
            d = self.stage / f"release-{suite}"
            d.mkdir()
            release, path = deb_archive.fetch_release(self.repo, suite, self.keyring, d,
                                                      accept_expired=self.accept_expired)
            self.cache.store_blob(path, release.sha256)
            self.log.write(f"fetch: dists/{suite}/InRelease: good signature by pinned archive key {release.signer}"
                           + (f"; EXPIRED on {release.valid_until:%Y-%m-%d}, accepted as asked (trial)"
                              if release.accepted_expired else "") + "\n")
            self.releases[suite] = release
        return self.releases[suite]

    def index(self, suite: str, relpath: str) -> tuple[bytes, str]:
        key = (suite, relpath)
        if key not in self.indexes:
            release = self.release(suite)
            d = self.stage / f"index-{suite}-{relpath.replace('/', '_')}"
            d.mkdir()
            data, name = deb_archive.fetch_index(self.repo, release, relpath, d)
            self.indexes[key] = (data, name)
            self.evidence[key] = Evidence(suite, release.sha256, name, release.files[name][0])
        return self.indexes[key]

    def expired_accepted(self) -> str:
        """'unstable 2026-11-06, ...': the suites used this run that were past their Valid-Until ('' if none)."""
        return ", ".join(r.expired_marker for _, r in sorted(self.releases.items()) if r.accepted_expired)

    def get(self, f: ArchiveFile) -> Path:
        """The verified file, from the cache when its bytes are there and intact, else downloaded and checked."""
        cached = self.cache.blob(f.sha256)
        if cached.is_file() and cached.stat().st_size == f.size and sha256_file(cached) == f.sha256:
            return cached
        name = f.filename.rsplit("/", 1)[-1]
        got = self.repo.get(f.filename, self.stage / name)
        deb_archive.check_listed(got, name, (f.sha256, f.size), f"dists/{f.suite}/{f.index}")
        return self.cache.store_blob(got, f.sha256)


def binary_file(s: Session, suite: str, relpath: str, stanza: dict[str, str]) -> ArchiveFile:
    filename = stanza.get("Filename", "")
    if not filename.startswith("pool/") or ".." in filename.split("/"):
        raise VerificationError(filename or stanza.get("Package", "?"), "malformed index",
                                "Filename is not a path below pool/")
    try:
        sha, size = stanza["SHA256"].lower(), int(stanza["Size"])
    except (KeyError, ValueError):
        raise VerificationError(stanza.get("Package", "?"), "malformed index",
                                f"the stanza in dists/{suite}/{relpath} has no SHA256 or Size") from None
    return ArchiveFile(stanza["Package"], stanza["Version"], filename, sha, size, suite,
                       s.indexes[(suite, relpath)][1])
