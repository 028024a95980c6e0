"""What the fetch stage is asked for and what it hands on, whichever source serves gosu."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.arches import Arch
from builder.gosu.download import DownloadError
from builder.gosu.signature import PinnedKeyError, VerificationError, pinned_keyring

from builder.config.settings import DEBIAN, GITHUB, KINDS, REBUILD, FetchOptions  # noqa: F401 - the sources' names


@dataclass(frozen=True)
class Fetched:
    arch: str
    version: str
    sha256: str
    size: int
    path: Path
    from_cache: bool
    sums_checked: bool
    locked: bool
    source: str
    kind: str = GITHUB
    trust_root: str = ""      # the fingerprint whose signature vouched (the release key, or an archive key)
    pinned: bool = True       # that key is one of the project's own (keys/), not a test or ad-hoc key
    details: tuple[tuple[str, str], ...] = ()  # source-specific facts for labels and the lock (suite, package)

    def detail(self, key: str) -> str:
        return dict(self.details).get(key, "")


@dataclass(frozen=True)
class Failure:
    arch: str
    file: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.arch}: {self.message}"


@dataclass
class FetchReport:
    fetched: list[Fetched] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def take_cached(self, arches, lookup) -> list[Arch]:
        """Hand on every arch `lookup(arch)` finds verified in the cache; return the arches still to fetch."""
        missing = []
        for arch in arches:
            hit = lookup(arch)
            if hit:
                self.fetched.append(hit)
            else:
                missing.append(arch)
        return missing

    def sorted(self) -> "FetchReport":
        self.fetched.sort(key=lambda f: f.arch)
        self.failures.sort(key=lambda f: f.arch)
        return self

    def fail_all(self, arches, e) -> None:
        """One failure that stops every arch (the release's checksums, the archive's InRelease)."""
        self.failures += [Failure(a.dpkg, e.file, e.reason, str(e)) for a in arches]

    def collect(self, arches, parallel: int, job) -> None:
        """Run job(arch) for every arch in parallel; an arch that fails fails alone, with its own reason."""
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            jobs = {a: pool.submit(job, a) for a in arches}
        for arch, done in jobs.items():
            try:
                self.fetched.append(done.result())
            except (DownloadError, VerificationError) as e:
                self.failures.append(Failure(arch.dpkg, e.file, e.reason, str(e)))




def with_archive_keys(opts: FetchOptions, run) -> FetchReport:
    """run(keyring, report) in a keyring of exactly the pinned archive keys; an unusable key fails every arch."""
    report = FetchReport()
    if not opts.archive_keys:
        report.failures = [Failure(a.dpkg, "archive keys", "pinned key",
                                   "no archive key is configured (gosu.debian.fingerprints)") for a in opts.arches]
        return report
    (first_file, first_fpr), *more = opts.archive_keys
    try:
        with pinned_keyring(first_file, first_fpr, *more) as keyring:
            run(keyring, report)
    except PinnedKeyError as e:
        report.failures = [Failure(a.dpkg, "archive keys", e.reason, f"archive keys: {e.reason}: {e}")
                           for a in opts.arches]
    return report.sorted()
