"""gosu from tianon's GitHub releases (or a mirror laid out the same way): <base>/<version>/gosu-<arch>.

Every binary handed on has passed, in this run, the pinned-key signature check,
the signed SHA256SUMS (where the release has one), the ELF check and the lock.
A warm run re-checks the cached bytes and signature instead of downloading.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from builder.core.arches import Arch
from builder.gosu.download import Cache, CacheRecord, DownloadError, Progress, Source, download, make_session
from builder.gosu.signature import (Keyring, PinnedKeyError, VerificationError, check_elf, check_sha256, is_project_key, parse_sha256sums, pinned_keyring, sha256_file)
from builder.gosu.sources.model import Failure, FetchOptions, FetchReport, Fetched


def fetch(opts: FetchOptions, log=sys.stderr) -> FetchReport:
    report = FetchReport()
    cache = Cache(opts.cache_dir)
    source = Source(opts.mirror)
    try:
        with pinned_keyring(opts.key_file, opts.fingerprint) as keyring:
            _fetch_all(opts, cache, source, keyring, report, log)
    except PinnedKeyError as e:
        report.failures = [Failure(a.dpkg, str(opts.key_file), e.reason, f"{opts.key_file.name}: {e.reason}: {e}")
                           for a in opts.arches]
    return report.sorted()


def _fetch_all(opts: FetchOptions, cache: Cache, source: Source, keyring: Keyring,
               report: FetchReport, log) -> None:
    missing = report.take_cached(opts.arches, lambda a: _from_cache(opts, cache, keyring, a, report))
    if not missing:
        return
    session = make_session(opts.retries, opts.backoff)
    stage = cache.staging()
    try:
        try:
            sums = _signed_sums(opts, source, session, keyring, stage)
        except (DownloadError, VerificationError) as e:
            report.fail_all(missing, e)
            return
        progress = Progress(2 * len(missing), stream=log)
        report.collect(missing, opts.parallel,
                       lambda a: _fetch_one(opts, cache, source, session, keyring, sums, stage, a, progress))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _from_cache(opts: FetchOptions, cache: Cache, keyring: Keyring, arch: Arch,
                report: FetchReport) -> Fetched | None:
    """Use a cached binary only after re-checking its bytes, signature, ELF and lock."""
    rec = cache.read(keyring.fingerprint, opts.version, arch.dpkg)
    if rec is None:
        return None
    blob, sig = cache.blob(rec.sha256), cache.blob(rec.signature_sha256)
    name = arch.release_file
    try:
        if not blob.is_file() or not sig.is_file():
            raise VerificationError(name, "cache damaged", "a verified file is gone from the cache")
        actual = sha256_file(blob)
        if actual != rec.sha256 or sha256_file(sig) != rec.signature_sha256:
            raise VerificationError(
                name, "cache modified",
                f"cached copy {blob} was modified on disk after it was verified (sha256 now {actual})",
            )
        keyring.verify(blob, sig, name)
        check_elf(blob, arch, name)
        locked = _check_lock(opts, arch, rec.sha256, rec.size)
    except VerificationError as e:
        cache.evict(keyring.fingerprint, opts.version, arch.dpkg, rec)
        cache.blob(rec.signature_sha256).unlink(missing_ok=True)
        report.warnings.append(f"{arch.dpkg}: {e}; evicted it from the cache and fetching again")
        return None
    return Fetched(arch.dpkg, opts.version, rec.sha256, rec.size, blob, True, rec.sums_checked, locked, rec.source,
                   **_trust(opts))


def _signed_sums(opts: FetchOptions, source: Source, session, keyring: Keyring, stage: Path) -> dict[str, str] | None:
    """The release's SHA256SUMS if it has one (older releases and plain mirrors do not)."""
    sums = download(session, source, opts.version, "SHA256SUMS", stage / "SHA256SUMS", opts.timeout, optional=True)
    if sums is None:
        return None
    sig = download(session, source, opts.version, "SHA256SUMS.asc", stage / "SHA256SUMS.asc", opts.timeout, optional=True)
    if sig is None:
        raise VerificationError("SHA256SUMS.asc", "missing signature",
                                "the release has SHA256SUMS but no SHA256SUMS.asc; an unsigned checksum file is not trusted")
    keyring.verify(sums, sig, "SHA256SUMS")
    return parse_sha256sums(sums.read_text(errors="replace"))


def _fetch_one(opts: FetchOptions, cache: Cache, source: Source, session, keyring: Keyring,
               sums: dict[str, str] | None, stage: Path, arch: Arch, progress: Progress) -> Fetched:
    name = arch.release_file
    mine = stage / arch.dpkg
    mine.mkdir()
    binary = download(session, source, opts.version, name, mine / name, opts.timeout, progress=progress)
    progress.finished(name, binary.stat().st_size)
    sig = download(session, source, opts.version, f"{name}.asc", mine / f"{name}.asc", opts.timeout,
                   optional=True, progress=progress)
    if sig is None:
        raise VerificationError(f"{name}.asc", "missing signature",
                                f"the release has no {name}.asc; an unsigned binary is never used")
    progress.finished(f"{name}.asc", sig.stat().st_size)
    keyring.verify(binary, sig, name)
    digest, size = sha256_file(binary), binary.stat().st_size
    if sums is not None:
        if name not in sums:
            raise VerificationError(name, "checksum mismatch", "the signed SHA256SUMS has no line for this file")
        check_sha256(name, digest, sums[name], "the signed SHA256SUMS")
    check_elf(binary, arch, name)
    locked = _check_lock(opts, arch, digest, size)
    # Only now does anything reach the cache: signature blob first, record last,
    # so a reader that finds the record always finds both files.
    sig_digest = sha256_file(sig)
    cache.store_blob(sig, sig_digest)
    path = cache.store_blob(binary, digest)
    where = source.location(opts.version, name)
    cache.write(keyring.fingerprint, opts.version, arch.dpkg,
                CacheRecord(digest, size, sig_digest, sums is not None, where))
    return Fetched(arch.dpkg, opts.version, digest, size, path, False, sums is not None, locked, where, **_trust(opts))


def _trust(opts: FetchOptions) -> dict:
    return {"kind": "github", "trust_root": opts.fingerprint, "pinned": is_project_key(opts.key_file, opts.fingerprint)}


def _check_lock(opts: FetchOptions, arch: Arch, digest: str, size: int) -> bool:
    return bool(opts.lock and opts.lock.check(opts.version, arch.dpkg, digest, size))



