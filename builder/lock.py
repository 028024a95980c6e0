"""The lock file: for the pinned gosu version, each arch's expected sha256.

A signature proves who made a file; the lock proves it is the same file we
reviewed. A fetched binary that differs from its lock entry is rejected even
when correctly signed, so a re-signed or re-tagged release cannot slip in.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .verify import VerificationError


@dataclass(frozen=True)
class LockEntry:
    sha256: str
    size: int | None
    source: str
    confidence: str  # "verified" once fetched with signature checks; else what vouches for it


@dataclass(frozen=True)
class Lock:
    version: str
    arches: dict[str, LockEntry] = field(default_factory=dict)

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


class LockFileError(ValueError):
    pass


def load(path: Path) -> Lock:
    try:
        raw = json.loads(path.read_text())
        return Lock(raw["version"], {a: LockEntry(**e) for a, e in raw["arches"].items()})
    except FileNotFoundError:
        raise LockFileError(f"lock file {path} does not exist; restore it from git or run `invoke lock --version V`") from None
    except (ValueError, KeyError, TypeError) as e:
        raise LockFileError(f"lock file {path} is malformed ({e}); restore it from git or run `invoke lock`") from None


def save(path: Path, lock: Lock) -> None:
    """Write atomically: a reader sees the old lock or the new one, never half."""
    data = {"version": lock.version, "arches": {a: asdict(e) for a, e in sorted(lock.arches.items())}}
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
    """A lock whose every entry was signature-verified in this run."""
    entries = {}
    for f in fetched:
        how = "signature by " + fingerprint + (" and signed SHA256SUMS" if f.sums_checked else " (release has no SHA256SUMS)")
        entries[f.arch] = LockEntry(f.sha256, f.size, f.source, f"verified: {how}")
    return Lock(version, entries)
