"""Debian's archive chain of trust, checked in Python: InRelease -> index -> package.

`dists/<suite>/InRelease` must carry a good signature by a pinned archive key
(gpg through python-gnupg; only the text the signature covers is read) and
must not be past its Valid-Until. Every index is then taken only if its
sha256 and size are the ones InRelease lists, and every package file only if
its sha256 and size are the ones its index lists. No apt or dpkg is used, so
this works on any host.
"""

from __future__ import annotations

import bz2
import datetime as dt
import functools
import gzip
import hashlib
import lzma
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from ..release import DownloadError, Source, get_file
from ..verify import Keyring, VerificationError, sha256_file

DEBIAN_HINT = ("; pass --mirror with another Debian mirror's base URL or a local directory laid out like the "
               "archive (dists/, pool/)")
# Tried in this order: the smallest first, as apt does.
COMPRESSIONS = ((".xz", lzma.decompress), (".gz", gzip.decompress), (".bz2", bz2.decompress), ("", bytes))


@dataclass(frozen=True)
class Release:
    suite: str
    fields: dict[str, str]
    files: dict[str, tuple[str, int]]  # path below dists/<suite>/ -> (sha256, size)
    signer: str                        # the pinned primary fingerprint whose signature was accepted
    sha256: str                        # of the InRelease file as served

    @property
    def valid_until(self) -> dt.datetime | None:
        text = self.fields.get("Valid-Until")
        return parsedate_to_datetime(text) if text else None


@dataclass(frozen=True)
class Archive:
    """A Debian mirror (URL or directory) and how to talk to it."""
    source: Source
    session: object
    timeout: float

    def get(self, relpath: str, dest: Path, optional: bool = False) -> Path | None:
        where = self.source.location(*relpath.split("/"))
        return get_file(self.session, self.source, where, relpath, dest, self.timeout, optional=optional,
                        hint=DEBIAN_HINT)


def parse_fields(text: str) -> dict[str, str]:
    """One deb822 paragraph: {field: value}, continuation lines kept (joined by newlines)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith((" ", "\t")) and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            fields[key] = value.strip()
    return fields


def parse_release(text: str, suite: str, signer: str, sha256: str, now: dt.datetime) -> Release:
    fields = parse_fields(text)
    files: dict[str, tuple[str, int]] = {}
    for line in fields.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            files[parts[2]] = (parts[0], int(parts[1]))
    if not files:
        raise VerificationError(f"dists/{suite}/InRelease", "malformed Release",
                                "lists no SHA256 checksums; this is not a Debian archive's Release file")
    release = Release(suite, fields, files, signer, sha256)
    until = release.valid_until
    if until and until <= now:
        raise VerificationError(
            f"dists/{suite}/InRelease", "expired Release",
            f"is valid until {until:%Y-%m-%d %H:%M} UTC, which has passed (the mirror is stale or replaying an "
            "old archive); use an up-to-date mirror")
    return release


def fetch_release(archive: Archive, suite: str, keyring: Keyring, stage: Path,
                  now: dt.datetime | None = None) -> tuple[Release, Path]:
    """The verified Release of a suite, and the InRelease file it came from."""
    path = archive.get(f"dists/{suite}/InRelease", stage / "InRelease")
    return release_from(path, suite, keyring, now), path


def release_from(path: Path, suite: str, keyring: Keyring, now: dt.datetime | None = None) -> Release:
    text, signer = keyring.verify_clearsigned(path, f"dists/{suite}/InRelease")
    return parse_release(text.decode("utf-8", "replace"), suite, signer, sha256_file(path),
                         now or dt.datetime.now(dt.timezone.utc))


def fetch_index(archive: Archive, release: Release, relpath: str, stage: Path) -> tuple[bytes, str]:
    """An index (e.g. main/binary-amd64/Packages), uncompressed, checked against the Release.

    Returns (text, path of the variant that was checked) so a cache can name it.
    """
    listed = [(suffix, unpack) for suffix, unpack in COMPRESSIONS if relpath + suffix in release.files]
    if not listed:
        raise VerificationError(relpath, "not in Release",
                                f"dists/{release.suite}/InRelease lists no {relpath}; does the suite carry it?")
    for suffix, unpack in listed:
        name = relpath + suffix
        got = archive.get(f"dists/{release.suite}/{name}", stage / name.replace("/", "_"), optional=True)
        if got is None:
            continue
        check_listed(got, name, release.files[name], f"dists/{release.suite}/InRelease")
        data = unpack(got.read_bytes())
        plain = release.files.get(relpath)
        if plain and suffix and (hashlib.sha256(data).hexdigest(), len(data)) != plain:
            raise VerificationError(relpath, "checksum mismatch",
                                    f"{name} unpacks to content that InRelease does not list for {relpath}")
        return data, name
    raise DownloadError(relpath, "HTTP 404",
                        f"the mirror serves none of {', '.join(relpath + s for s, _ in listed)}{DEBIAN_HINT}")


def check_listed(path: Path, name: str, expected: tuple[str, int], where: str) -> str:
    """The file's sha256 and size must be exactly what a signed index lists; returns the sha256."""
    digest, size = sha256_file(path), path.stat().st_size
    if size != expected[1]:
        raise VerificationError(name, "size mismatch", f"is {size} bytes but {where} lists {expected[1]}")
    if digest != expected[0]:
        raise VerificationError(name, "checksum mismatch",
                                f"sha256 is {digest} but {where} lists {expected[0]}; do not use this file")
    return digest


def packages_named(index: bytes, name: str, arch: str | tuple[str, ...]) -> list[dict[str, str]]:
    """Stanzas of the package `name` built for `arch` (or any of several) in a Packages index."""
    return [s for s in stanzas_starting(index, name, arch) if s.get("Package") == name]


def stanzas_starting(index: bytes, prefix: str, arch: str | tuple[str, ...] | None = None) -> list[dict[str, str]]:
    """Stanzas whose Package starts with `prefix` (and, if given, whose Architecture is `arch` or one of them).

    Searched for by their `Package:` line rather than by parsing every one of
    the index's tens of thousands of paragraphs.
    """
    wanted = (arch,) if isinstance(arch, str) else arch
    out = []
    marker = f"\nPackage: {prefix}".encode()
    text = b"\n" + index
    pos = text.find(marker)
    while pos >= 0:
        end = text.find(b"\n\n", pos + 1)
        fields = parse_fields(text[pos + 1:end if end >= 0 else len(text)].decode("utf-8", "replace"))
        if wanted is None or fields.get("Architecture") in wanted:
            out.append(fields)
        pos = text.find(marker, pos + 1)
    return out


def sources_named(index: bytes, name: str) -> list[dict[str, str]]:
    """Stanzas of the source package `name` in a Sources index."""
    return [s for s in stanzas_starting(index, name) if s.get("Package") == name]


def source_file(stanza: dict[str, str], pattern: str, where: str) -> tuple[str, str, int]:
    """(pool path, sha256, size) of the one file of a Sources stanza whose name matches `pattern`."""
    directory = stanza.get("Directory", "")
    if not directory.startswith("pool/") or ".." in directory.split("/"):
        raise VerificationError(stanza.get("Package", "?"), "malformed index",
                                f"the Directory of {stanza.get('Package')} in {where} is not a path below pool/")
    for line in stanza.get("Checksums-Sha256", "").splitlines():
        parts = line.split()
        if len(parts) == 3 and re.fullmatch(pattern, parts[2]) and "/" not in parts[2]:
            return f"{directory}/{parts[2]}", parts[0].lower(), int(parts[1])
    raise VerificationError(stanza.get("Package", "?"), "no source file",
                            f"{stanza.get('Package')} {stanza.get('Version')} in {where} lists no file "
                            f"matching {pattern} in Checksums-Sha256")


def arch_all_index(release: Release, host: str) -> str:
    """Where arch-all packages are listed: the host's Packages when the Release says both carry them.

    A Release with `No-Support-for-Architecture-all: Packages` lists arch-all
    packages in every binary-<arch>/Packages as well as in binary-all (Debian's
    archive does), so one index serves a host's whole toolchain.
    """
    if release.fields.get("No-Support-for-Architecture-all", "").strip() == "Packages":
        return f"main/binary-{host}/Packages"
    return "main/binary-all/Packages"


# --- Debian version ordering (deb-version(7)), to choose the newest of several ---

def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    while a or b:
        na = re.match(r"\D*", a).group()
        nb = re.match(r"\D*", b).group()
        for i in range(max(len(na), len(nb))):
            ca = _order(na[i]) if i < len(na) else 0
            cb = _order(nb[i]) if i < len(nb) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(na):], b[len(nb):]
        da = re.match(r"\d*", a).group()
        db = re.match(r"\d*", b).group()
        if int(da or 0) != int(db or 0):
            return -1 if int(da or 0) < int(db or 0) else 1
        a, b = a[len(da):], b[len(db):]
    return 0


def split_version(v: str) -> tuple[int, str, str]:
    epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    ea, ua, ra = split_version(a)
    eb, ub, rb = split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def newest_first(items: list, stanza=lambda item: item) -> list:
    """Items ordered by their stanza's Version, newest first (Debian's ordering)."""
    def cmp(a, b) -> int:
        return compare_versions(stanza(a).get("Version", ""), stanza(b).get("Version", ""))
    return sorted(items, key=functools.cmp_to_key(cmp), reverse=True)


def upstream_version(v: str) -> str:
    """'1.17-3+b4' -> '1.17': the version gosu itself reports."""
    return split_version(v)[1]
