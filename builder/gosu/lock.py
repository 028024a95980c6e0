"""The lock file: for each source, what every arch's gosu must be.

A signature proves who made a file; the lock proves it is the same file we
reviewed. A fetched binary that differs from its lock entry is rejected even
when correctly signed, so a re-signed release or a rebuilt package cannot
slip in. `github` pins tianon's release files; `debian` pins, per arch, the
package version, the .deb and the binary inside it; `rebuild` pins, per arch,
every input of the compile (orig tarball, toolchain packages, dependency
packages) and the binary it must give.

A lock pins bytes, not freshness: a section made from a suite taken past its
Valid-Until (--accept-expired) records so in `expired_accepted`, and every
later fetch still checks each InRelease's validity itself, so the lock never
lets an expired suite through for a run that did not accept it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder.core.errors import BuilderError
from builder.gosu.signature import VerificationError


@dataclass(frozen=True)
class LockEntry:
    sha256: str
    size: int | None
    source: str
    confidence: str  # "verified" once fetched with signature checks; else what vouches for it


@dataclass(frozen=True)
class DebianEntry:
    package_version: str
    deb_sha256: str
    sha256: str
    size: int
    source: str


@dataclass(frozen=True)
class DebianLock:
    suite: str
    version: str
    arches: dict[str, DebianEntry] = field(default_factory=dict)
    expired_accepted: str = ""   # 'trixie 2026-11-06': locked from a suite accepted past its Valid-Until

    def check(self, arch: str, package: str, deb_sha256: str, sha256: str, size: int) -> bool:
        """Raise if the lock disagrees; True when it pinned this arch."""
        entry = self.arches.get(arch)
        name = f"gosu:{arch}"
        if entry is None:
            raise VerificationError(name, "not in lock", f"Debian's gosu {self.version} ({self.suite}) is locked but "
                                    f"has no entry for {arch}; run `invoke lock --source debian --arch all`")
        for what, got, want in (("package version", package, entry.package_version),
                                (".deb sha256", deb_sha256, entry.deb_sha256),
                                ("binary sha256", sha256, entry.sha256), ("binary size", size, entry.size)):
            if got != want:
                raise VerificationError(
                    name, "lock mismatch",
                    f"{what} is {got} but the lock file pins {want}; a correctly signed package that differs "
                    "from the lock is rejected (review it, then `invoke lock --source debian`)")
        return True


@dataclass(frozen=True)
class RebuildEntry:
    """One arch of a rebuild: every input that decides its bytes, and the bytes."""
    orig_sha256: str
    go_package: str                  # e.g. golang-1.27-go
    go_package_version: str
    toolchain_debs: dict[str, str]   # package -> .deb sha256 (golang-1.NN-go for the host, golang-1.NN-src)
    deps: dict[str, str]             # Debian package -> version
    sha256: str
    size: int


@dataclass(frozen=True)
class RebuildLock:
    suite: str     # where the orig tarball comes from
    version: str
    arches: dict[str, RebuildEntry] = field(default_factory=dict)
    expired_accepted: str = ""   # 'unstable 2026-11-06': locked from suites accepted past their Valid-Until

    def entry(self, arch: str) -> RebuildEntry:
        entry = self.arches.get(arch)
        if entry is None:
            raise VerificationError(f"gosu-{arch}", "not in lock",
                                    f"the rebuild of gosu {self.version} is locked but has no entry for {arch}; run "
                                    "`invoke lock --source rebuild --arch all`")
        return entry

    def check_inputs(self, arch: str, got: RebuildEntry) -> None:
        want = self.entry(arch)
        for what, a, b in (("orig tarball sha256", got.orig_sha256, want.orig_sha256),
                           ("Go toolchain", f"{got.go_package} {got.go_package_version}",
                            f"{want.go_package} {want.go_package_version}"),
                           ("toolchain .deb sha256s", got.toolchain_debs, want.toolchain_debs),
                           ("dependency packages", got.deps, want.deps)):
            if a != b:
                raise VerificationError(f"gosu-{arch}", "lock mismatch",
                                        f"{what}: {a}, but the lock file pins {b}; review the new input, then run "
                                        "`invoke lock --source rebuild`")

    def check_output(self, arch: str, sha256: str, size: int) -> bool:
        want = self.entry(arch)
        if (sha256, size) != (want.sha256, want.size):
            raise VerificationError(
                f"gosu-{arch}", "lock mismatch",
                f"the rebuild's sha256 is {sha256} ({size} bytes) but the lock file pins {want.sha256} "
                f"({want.size} bytes) for the same inputs; the build is not reproducing, so it is refused")
        return True


@dataclass(frozen=True)
class Lock:
    version: str
    arches: dict[str, LockEntry] = field(default_factory=dict)
    debian: DebianLock | None = None
    rebuild: RebuildLock | None = None

    def check(self, version: str, arch: str, sha256: str, size: int) -> bool:
        """Raise if the lock disagrees; return False when the version is not locked."""
        if version != self.version:
            return False
        name = f"gosu-{arch}"
        entry = self.arches.get(arch)
        if entry is None:
            raise VerificationError(name, "not in lock", f"gosu {version} is locked but has no entry for {arch}; run `invoke lock --version {version}`")
        if entry.sha256 != sha256:
            raise VerificationError(
                name, "lock mismatch",
                f"sha256 is {sha256} but the lock file pins {entry.sha256} ({entry.confidence}); "
                "a correctly signed file that differs from the lock is rejected",
            )
        if entry.size is not None and entry.size != size:
            raise VerificationError(name, "lock mismatch", f"size is {size} bytes but the lock file pins {entry.size}")
        return True


class LockFileError(BuilderError, ValueError):
    pass


def load(path: Path) -> Lock:
    try:
        raw = json.loads(path.read_text())
        github = raw.get("github", raw)  # the first lock files had the github section at the top
        deb = raw.get("debian")
        debian = DebianLock(deb["suite"], deb["version"], {a: DebianEntry(**e) for a, e in deb["arches"].items()},
                            str(deb.get("expired_accepted", ""))) if deb else None
        reb = raw.get("rebuild")
        rebuild = RebuildLock(reb["suite"], reb["version"],
                              {a: RebuildEntry(**e) for a, e in reb["arches"].items()},
                              str(reb.get("expired_accepted", ""))) if reb else None
        return Lock(github["version"], {a: LockEntry(**e) for a, e in github["arches"].items()}, debian, rebuild)
    except FileNotFoundError:
        raise LockFileError(f"lock file {path} does not exist; restore it from git or run `invoke lock --version V`") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LockFileError(f"lock file {path} is malformed ({e}); restore it from git or run `invoke lock`") from None


def save(path: Path, lock: Lock) -> None:
    """Write atomically: a reader sees the old lock or the new one, never half."""
    data = {"github": {"version": lock.version, "arches": {a: asdict(e) for a, e in sorted(lock.arches.items())}}}
    for name, section in (("debian", lock.debian), ("rebuild", lock.rebuild)):
        if section:
            data[name] = {"suite": section.suite, "version": section.version,
                          **({"expired_accepted": section.expired_accepted} if section.expired_accepted else {}),
                          "arches": {a: asdict(e) for a, e in sorted(section.arches.items())}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def from_fetched(version: str, fetched, fingerprint: str) -> Lock:
    """A lock whose every entry was signature-verified in this run (the github section)."""
    entries = {}
    for f in fetched:
        how = "signature by " + fingerprint + (" and signed SHA256SUMS" if f.sums_checked else " (release has no SHA256SUMS)")
        entries[f.arch] = LockEntry(f.sha256, f.size, f.source, f"verified: {how}")
    return Lock(version, entries)


def with_debian(lock: Lock, suite: str, fetched) -> Lock:
    """The same lock with its debian section replaced by what this run verified."""
    versions = sorted({f.version for f in fetched})
    if len(versions) != 1:
        raise LockFileError(f"the arches resolved to different gosu versions ({', '.join(versions)}); "
                            "pass --version to lock one")
    entries = {f.arch: DebianEntry(f.detail("package"), f.detail("deb_sha256"), f.sha256, f.size, f.source)
               for f in fetched}
    return Lock(lock.version, lock.arches, DebianLock(suite, versions[0], entries, _expired(fetched)), lock.rebuild)


def _expired(fetched) -> str:
    """The suites the fetched arches were accepted from past their Valid-Until ('' if none)."""
    return ", ".join(sorted({f.detail("expired_accepted") for f in fetched} - {""}))


def rebuild_entry(f) -> RebuildEntry:
    """The lock entry of one rebuilt arch, from what the rebuild source reports in its details."""
    d = dict(f.details)
    return RebuildEntry(d["orig_sha256"], d["go_package"], d["go_package_version"],
                        json.loads(d["toolchain_debs"]), {k: v for k, v, *_ in json.loads(d["deps"])},
                        f.sha256, f.size)


def with_rebuild(lock: Lock, suite: str, fetched) -> Lock:
    """The same lock with its rebuild section replaced by what this run built."""
    versions = sorted({f.version for f in fetched})
    if len(versions) != 1:
        raise LockFileError(f"the arches resolved to different gosu versions ({', '.join(versions)})")
    entries = {f.arch: rebuild_entry(f) for f in fetched}
    return Lock(lock.version, lock.arches, lock.debian, RebuildLock(suite, versions[0], entries, _expired(fetched)))


def updated(lock: Lock, opts, fetched) -> Lock:
    """`lock` with the section of `opts.kind` replaced by what this run verified; the others kept."""
    if not fetched:
        raise LockFileError("nothing was fetched, so nothing can be locked")
    if opts.kind == "debian":
        return with_debian(lock, opts.suite, fetched)
    if opts.kind == "rebuild":
        return with_rebuild(lock, opts.suite, fetched)
    new = from_fetched(opts.version, fetched, opts.fingerprint)
    return Lock(new.version, new.arches, lock.debian, lock.rebuild)


def summary(path: Path, opts, fetched: list) -> str:
    """What `invoke lock` wrote, in one line."""
    expired = fetched[0].detail("expired_accepted")
    return (f"wrote {path}: {opts.kind} gosu {fetched[0].version}, {len(fetched)} arches"
            + (f" (from expired suite(s), recorded: {expired}; fetches without --accept-expired still refuse them)"
               if expired else ""))

