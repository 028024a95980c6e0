"""A small Debian-layout archive signed by a throwaway key, for rebuild tests and demos (trial images only).

It holds exactly what `--source rebuild` needs: Debian's real Go toolchain
and dependency packages, each taken through the project's own chain from the
configured suites with Debian's pinned keys, and gosu's orig tarball, which
is accepted only with the sha256 it is given (the one a Debian Sources index
lists for it). Its InRelease is signed by a locally generated key, so
everything built from it is a trial input. It exists because, where this was
written, the one suite carrying gosu 1.19's source (unstable) had an expired
Release on the mirror, and the chain rightly refuses that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import lzma
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder.gosu.fetch import FetchOptions
from builder.gosu.download import Cache, Source, make_session
from builder.gosu.sources.archive import Archive
from builder.gosu.sources.inputs import ArchiveFile, Pins, Session, dependency, toolchain_files
from builder.gosu.testmirror import gpg, throwaway_key
from builder.gosu.signature import VerificationError, pinned_keyring, sha256_file

SUITE = "rebuild-test"


@dataclass(frozen=True)
class TestArchive:
    root: Path
    suite: str
    key_file: Path
    fingerprint: str
    config: Path


def make(root: Path, opts: FetchOptions, orig_version: str, orig_sha256: str, log) -> TestArchive:
    """`opts`: rebuild fetch options against Debian's real archive and keys."""
    root.mkdir(parents=True, exist_ok=True)
    fpr = throwaway_key(root / "gnupg")
    cache = Cache(opts.cache_dir)
    files: list[ArchiveFile] = []
    stage = cache.staging()
    try:
        (first_file, first_fpr), *more = opts.archive_keys
        with pinned_keyring(first_file, first_fpr, *more) as keyring:
            s = Session(Archive(Source(opts.mirror), make_session(opts.retries, opts.backoff), opts.timeout),
                        keyring, cache, stage, log)
            _, go_files = toolchain_files(s, opts.suites, opts.host_arch, opts.go, Pins())
            files += go_files
            files += [dependency(s, m, p, opts.suites, opts.host_arch).file for m, p in opts.modules]
            paths = {f.sha256: s.get(f) for f in files}
            orig_name = f"gosu_{orig_version.split('-')[0]}.orig.tar.gz"
            orig = ArchiveFile("gosu", orig_version, f"pool/main/g/gosu/{orig_name}", orig_sha256, 0, SUITE, "")
            got = s.repo.get(orig.filename, stage / orig_name)
            if sha256_file(got) != orig_sha256:
                raise VerificationError(orig_name, "checksum mismatch",
                                        f"sha256 is {sha256_file(got)}, not the {orig_sha256} it was given")
            paths[orig_sha256] = cache.store_blob(got, orig_sha256)
            orig = dataclasses.replace(orig, size=got.stat().st_size)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for f in [*files, orig]:
        dest = root / f.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or sha256_file(dest) != f.sha256:
            shutil.copyfile(paths[f.sha256], dest.with_suffix(".tmp"))
            os.replace(dest.with_suffix(".tmp"), dest)
    _write_dists(root, opts.host_arch, files, orig, fpr)
    key_dir = root / "keys"
    key_dir.mkdir(exist_ok=True)
    key_file = key_dir / f"{fpr}.asc"
    key_file.write_text(gpg(root / "gnupg", "--armor", "--export", fpr))
    config = root / "invoke.yaml"
    config.write_text(
        "# Written for rebuild tests: trust a throwaway key for this archive only (trial images).\n"
        f"gosu:\n  debian:\n    mirror: '{root}'\n    keys_dir: '{key_dir}'\n    fingerprints: '{fpr}'\n"
        f"  rebuild:\n    source_suite: '{SUITE}'\n    suites: '{SUITE}'\n")
    log.write(f"test-archive: {root} dists/{SUITE} signed by test key {fpr}: gosu {orig_version} source, "
              f"{', '.join(f'{f.name} {f.version}' for f in files)}\n")
    return TestArchive(root, SUITE, key_file, fpr, config)


def _write_dists(root: Path, host: str, files: list[ArchiveFile], orig: ArchiveFile, fpr: str) -> None:
    dists = root / "dists" / SUITE
    packages = "\n".join(
        f"Package: {f.name}\nVersion: {f.version}\nArchitecture: {'all' if f.filename.endswith('_all.deb') else host}"
        f"\nFilename: {f.filename}\nSize: {f.size}\nSHA256: {f.sha256}\n" for f in files).encode()
    name = orig.filename.rsplit("/", 1)[1]
    sources = (f"Package: gosu\nBinary: gosu\nVersion: {orig.version}\nDirectory: pool/main/g/gosu\n"
               f"Checksums-Sha256:\n {orig.sha256} {orig.size} {name}\n").encode()
    listed = {}
    for rel, data in ((f"main/binary-{host}/Packages", packages), ("main/source/Sources", sources)):
        for suffix, body in (("", data), (".xz", lzma.compress(data))):
            path = dists / (rel + suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            listed[rel + suffix] = body
    lines = [f"Suite: {SUITE}", f"Codename: {SUITE}", f"Architectures: {host} all", "Components: main",
             "No-Support-for-Architecture-all: Packages", "SHA256:"]
    lines += [f" {hashlib.sha256(d).hexdigest()} {len(d):>8} {p}" for p, d in sorted(listed.items())]
    (dists / "Release").write_text("\n".join(lines) + "\n")
    gpg(root / "gnupg", "--local-user", fpr, "--output", str(dists / "InRelease"), "--clearsign",
        str(dists / "Release"))
