"""A small Debian archive made by the tests: dists/<suite>/InRelease (clearsigned), Packages, pool/ .debs."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import lzma
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.core import arches

from tests.support.fakerelease import fake_elf
from tests.support.gpgkit import GpgTestKey, clearsign


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def make_deb(files: dict[str, bytes], compress=lzma.compress, suffix: str = ".xz") -> bytes:
    return deb_of(_tar(files), compress, suffix)


def deb_of(data_tar: bytes, compress=lzma.compress, suffix: str = ".xz") -> bytes:
    """A .deb as deb(5) lays it out (debian-binary, control.tar, data.tar) around a given data.tar."""
    control = _tar({"./control": b"Package: gosu\n"})
    return ar([("debian-binary", b"2.0\n"), ("control.tar.xz", lzma.compress(control)),
               (f"data.tar{suffix}", compress(data_tar))])


@dataclass
class FakeArchive:
    root: Path
    key: GpgTestKey
    suite: str = "testing"
    version: str = "9.9-1+b1"
    arch_names: tuple[str, ...] = ("amd64", "arm64", "armhf", "s390x")
    valid_until: dt.datetime | None = None
    date: dt.datetime = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    binaries: dict[str, bytes] = field(default_factory=dict)
    debs: dict[str, bytes] = field(default_factory=dict)
    # Source packages: name -> (version, {file name: content}), listed in main/source/Sources.
    sources: dict[str, tuple[str, dict[str, bytes]]] = field(default_factory=dict)
    # Extra binary stanzas (e.g. a toolchain's packages), arch -> [(name, version, arch, deb bytes)].
    extra: dict[str, list[tuple[str, str, str, bytes]]] = field(default_factory=dict)

    def build(self) -> "FakeArchive":
        dists = self.root / "dists" / self.suite
        listed = {}
        for name in self.arch_names:
            a = arches.get(name)
            binary = self.binaries.setdefault(name, fake_elf(a, f"gosu {self.version} {name}".encode()))
            deb = self.debs.setdefault(name, make_deb({"./usr/sbin/gosu": binary, "./usr/share/doc/gosu/x": b"x"}))
            filename = f"pool/main/g/gosu/gosu_{self.version}_{name}.deb"
            (self.root / filename).parent.mkdir(parents=True, exist_ok=True)
            (self.root / filename).write_bytes(deb)
            stanza = (f"Package: gosu\nVersion: {self.version}\nArchitecture: {name}\n"
                      f"Built-Using: golang-1.99 (= 1.99.1-1)\nFilename: {filename}\nSize: {len(deb)}\n"
                      f"SHA256: {hashlib.sha256(deb).hexdigest()}\n")
            other = f"Package: gosu-other\nVersion: 1\nArchitecture: {name}\nFilename: pool/x.deb\nSize: 1\n"
            more = [self._pool_stanza(*e) for e in self.extra.get(name, [])]
            packages = "\n".join([other, stanza, *more]).encode()
            rel = f"main/binary-{name}/Packages"
            (dists / rel).parent.mkdir(parents=True, exist_ok=True)
            for suffix, data in (("", packages), (".xz", lzma.compress(packages)), (".gz", gzip.compress(packages))):
                (dists / (rel + suffix)).write_bytes(data)
                listed[rel + suffix] = data
        if self.sources:
            text = "\n".join(self._source_stanza(n, v, files) for n, (v, files) in sorted(self.sources.items()))
            rel = "main/source/Sources"
            (dists / rel).parent.mkdir(parents=True, exist_ok=True)
            for suffix, data in (("", text.encode()), (".xz", lzma.compress(text.encode()))):
                (dists / (rel + suffix)).write_bytes(data)
                listed[rel + suffix] = data
        self.write_release(listed)
        return self

    def _pool_stanza(self, package: str, version: str, arch: str, data: bytes) -> str:
        filename = f"pool/main/{package[0]}/{package}/{package}_{version}_{arch}.deb"
        (self.root / filename).parent.mkdir(parents=True, exist_ok=True)
        (self.root / filename).write_bytes(data)
        return (f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\nFilename: {filename}\n"
                f"Size: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")

    def _source_stanza(self, name: str, version: str, files: dict[str, bytes]) -> str:
        directory = f"pool/main/{name[0]}/{name}"
        (self.root / directory).mkdir(parents=True, exist_ok=True)
        lines = []
        for fname, data in sorted(files.items()):
            (self.root / directory / fname).write_bytes(data)
            lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {fname}")
        return (f"Package: {name}\nBinary: {name}\nVersion: {version}\nDirectory: {directory}\n"
                "Checksums-Sha256:\n" + "\n".join(lines) + "\n")

    def write_release(self, listed: dict[str, bytes]) -> None:
        dists = self.root / "dists" / self.suite
        lines = [f"Suite: {self.suite}", f"Codename: {self.suite}", f"Date: {self.date:%a, %d %b %Y %H:%M:%S} UTC"]
        if self.extra:  # as Debian's Release says: arch-all packages are in each binary-<arch> index too
            lines.append("No-Support-for-Architecture-all: Packages")
        if self.valid_until:
            lines.append(f"Valid-Until: {self.valid_until:%a, %d %b %Y %H:%M:%S} UTC")
        lines.append("SHA256:")
        lines += [f" {hashlib.sha256(d).hexdigest()} {len(d):>8} {p}" for p, d in sorted(listed.items())]
        (dists / "Release").write_text("\n".join(lines) + "\n")
        clearsign(self.key, dists / "Release", dists / "InRelease")

    def path(self, rel: str) -> Path:
        return self.root / rel
