"""Debian's archive chain of trust, checked in Python: InRelease -> index -> package.

`dists/<suite>/InRelease` must carry a good signature by a pinned archive key
(gpg through python-gnupg; only the text the signature covers is read), a
sane Date, and must not be past its Valid-Until, unless the caller accepts
that suite expired on purpose (a stale mirror or a snapshot, as apt's
Check-Valid-Until=false): the Release then says so (`accepted_expired`) and
what is made from it is a trial input. Every index is then taken only if its
sha256 and size are the ones InRelease lists, and every package file only if
its sha256 and size are the ones its index lists. No apt or dpkg is used, so
this works on any host.

Debian's formats are read with python-debian, Debian's own library for them:
deb822 paragraphs (`deb822.Deb822`), the multi-line checksum fields of a
Release and of a Sources stanza (`deb822.Release`, `deb822.Sources`) and
version ordering (`debian_support.Version`, deb-version(7)). Only the text
gpg returns as signed reaches the Release parser. Two things stay here:
finding a package's stanzas in an index by its `Package:` line, so that only
those paragraphs are parsed (python-debian parses every paragraph in Python
unless python-apt's apt_pkg is installed, which is not on PyPI: about 10 s
for trixie's amd64 Packages, 68,829 paragraphs, against 0.1 s), and the
chain's own checks (Date, Valid-Until, sizes and checksums), which are not
format parsing.
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import hashlib
import lzma
import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from debian import deb822
from debian.debian_support import Version, version_compare

from builder.gosu.download import DownloadError, Source, get_file
from builder.gosu.signature import Keyring, VerificationError, sha256_file

DEBIAN_HINT = ("; pass --mirror with another Debian mirror's base URL or a local directory laid out like the "
               "archive (dists/, pool/)")
# How far a Release's Date may be ahead of this machine's clock (apt refuses "not valid yet" beyond its own).
MAX_FUTURE = dt.timedelta(days=1)
# Tried in this order: the smallest first, as apt does.
COMPRESSIONS = ((".xz", lzma.decompress), (".gz", gzip.decompress), (".bz2", bz2.decompress), ("", bytes))


@dataclass(frozen=True)
class Release:
    suite: str
    fields: dict[str, str]
    files: dict[str, tuple[str, int]]  # path below dists/<suite>/ -> (sha256, size)
    signer: str                        # the pinned primary fingerprint whose signature was accepted
    sha256: str                        # of the InRelease file as served
    accepted_expired: bool = False     # past its Valid-Until, taken only because the caller named this suite

    @property
    def valid_until(self) -> dt.datetime | None:
        return _date(self.fields, "Valid-Until", self.suite)

    @property
    def expired_marker(self) -> str:
        """'unstable 2026-11-06' for a suite taken past its Valid-Until, else ''."""
        return f"{self.suite} {self.valid_until:%Y-%m-%d}" if self.accepted_expired else ""


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


def _paragraph(text: str) -> dict[str, str]:
    """The first deb822 paragraph of `text`: {field: value}, a multi-line value as python-debian keeps it.

    A whitespace-only line does not end the paragraph, as apt reads indexes.
    """
    fields = deb822.Deb822(text, strict={"whitespace-separates-paragraphs": False})
    return {str(k): v for k, v in fields.items()}


def _date(fields: dict[str, str], name: str, suite: str) -> dt.datetime | None:
    text = fields.get(name)
    if not text:
        return None
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value.tzinfo is None:
        raise VerificationError(f"dists/{suite}/InRelease", "malformed Release",
                                f"its {name} {text!r} is not an RFC 2822 date with a time zone")
    return value


def expired_message(suite: str, until: dt.datetime, now: dt.datetime) -> str:
    days = (now - until).days
    ago = "today" if days < 1 else f"{days} day{'s' if days != 1 else ''} ago"
    return (f"{suite}'s InRelease expired on {until:%Y-%m-%d %H:%M} UTC ({ago}): the mirror is stale or replaying "
            f"an old archive; use a current mirror, or --accept-expired {suite} (gosu.debian.accept_expired) to "
            "accept it (images built from it are trial images)")


def parse_release(text: str, suite: str, signer: str, sha256: str, now: dt.datetime,
                  accept_expired: bool = False) -> Release:
    """The signed Release text, checked; `accept_expired`: this suite may be past its Valid-Until (marked)."""
    fields = _paragraph(text)
    listed = deb822.Release(fields).get("SHA256") or []
    files: dict[str, tuple[str, int]] = {}
    for entry in listed if isinstance(listed, list) else [listed]:
        sha, size, name = entry.get("sha256", ""), entry.get("size", ""), entry.get("name", "")
        if re.fullmatch(r"[0-9a-f]{64}", sha) and re.fullmatch(r"[0-9]+", size) and re.fullmatch(r"\S+", name):
            files[name] = (sha, int(size))
    if not files:
        raise VerificationError(f"dists/{suite}/InRelease", "malformed Release",
                                "lists no SHA256 checksums; this is not a Debian archive's Release file")
    where = f"dists/{suite}/InRelease"
    date, until = _date(fields, "Date", suite), _date(fields, "Valid-Until", suite)
    # These hold whether or not expiry is accepted: an expired Release is still a real, dated one.
    if date and date > now + MAX_FUTURE:
        raise VerificationError(where, "Release not valid yet",
                                f"is dated {date:%Y-%m-%d %H:%M} UTC, in the future; check this machine's clock")
    if date and until and until <= date:
        raise VerificationError(where, "malformed Release", f"its Valid-Until ({until:%Y-%m-%d %H:%M}) is not "
                                f"after its Date ({date:%Y-%m-%d %H:%M})")
    expired = bool(until and until <= now)
    if expired and not accept_expired:
        raise VerificationError(where, "expired Release", expired_message(suite, until, now))
    if expired and not date:
        raise VerificationError(where, "malformed Release", "is expired and has no Date, so how old it is cannot "
                                "be told; it is not accepted even with --accept-expired")
    return Release(suite, fields, files, signer, sha256, accepted_expired=expired)


def fetch_release(archive: Archive, suite: str, keyring: Keyring, stage: Path,
                  now: dt.datetime | None = None, accept_expired: tuple[str, ...] = ()) -> tuple[Release, Path]:
    """The verified Release of a suite, and the InRelease file it came from."""
    path = archive.get(f"dists/{suite}/InRelease", stage / "InRelease")
    return release_from(path, suite, keyring, now, accept_expired), path


def release_from(path: Path, suite: str, keyring: Keyring, now: dt.datetime | None = None,
                 accept_expired: tuple[str, ...] = ()) -> Release:
    """`accept_expired`: the suites that may be past their Valid-Until (the caller's explicit opt-in)."""
    text, signer = keyring.verify_clearsigned(path, f"dists/{suite}/InRelease")
    return parse_release(text.decode("utf-8", "replace"), suite, signer, sha256_file(path),
                         now or dt.datetime.now(dt.timezone.utc), suite in accept_expired)


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

    Found by their `Package:` line, so that only those paragraphs are parsed
    rather than every one of the index's tens of thousands. A stanza taken
    must carry a Debian version, which is what the newest is chosen by.
    """
    wanted = (arch,) if isinstance(arch, str) else arch
    out = []
    marker = f"\nPackage: {prefix}".encode()
    text = b"\n" + index
    pos = text.find(marker)
    while pos >= 0:
        end = text.find(b"\n\n", pos + 1)
        fields = _paragraph(text[pos + 1:end if end >= 0 else len(text)].decode("utf-8", "replace"))
        if wanted is None or fields.get("Architecture") in wanted:
            try:
                Version(fields.get("Version", ""))
            except ValueError:
                raise VerificationError(fields.get("Package", "?"), "malformed index",
                                        f"{fields.get('Package')} has Version {fields.get('Version')!r}, which is "
                                        "not a Debian version (deb-version(7))") from None
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
    listed = deb822.Sources(stanza).get("Checksums-Sha256") or []
    for entry in listed if isinstance(listed, list) else [listed]:
        name, sha, size = entry.get("name", ""), entry.get("sha256", ""), entry.get("size", "")
        if re.fullmatch(pattern, name) and "/" not in name and re.fullmatch(r"[0-9]+", size):
            return f"{directory}/{name}", sha.lower(), int(size)
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

def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian orders the versions `a` and `b` (ValueError if one is not a Debian version)."""
    return version_compare(a, b)


def newest_first(items: list, stanza=lambda item: item) -> list:
    """Items ordered by their stanza's Version, newest first (Debian's ordering)."""
    return sorted(items, key=lambda item: Version(stanza(item).get("Version", "")), reverse=True)


def upstream_version(v: str) -> str:
    """'1.17-3+b4' -> '1.17': the version gosu itself reports."""
    return Version(v).upstream_version
