"""A base's OS packages, from its package database: dpkg's status file (Debian, Ubuntu, distroless) or apk's.

Parsers only: `basepkgs.py` reads the files out of the image's layers. The
package URLs name what the packages really are, after /etc/os-release (a
stand-in built from Debian says `pkg:deb/debian/...`, whatever its flavor).
"""

from __future__ import annotations

from dataclasses import dataclass

from packageurl import PackageURL

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    purl: str
    source: str = ""      # the source package (dpkg) or origin (apk) it was built from
    license: str = ""     # apk records one; dpkg keeps licenses in /usr/share/doc, not in its status file


@dataclass(frozen=True)
class Distro:
    id: str               # os-release ID: debian, alpine, ubuntu
    version_id: str
    pretty_name: str = ""


def os_release(text: str) -> Distro:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            fields[key.strip()] = value.strip().strip('"').strip("'")
    return Distro(fields.get("ID", ""), fields.get("VERSION_ID", ""), fields.get("PRETTY_NAME", ""))


def stanzas(text: str):
    """RFC-822-like records separated by blank lines; continuation lines belong to the field above."""
    record: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if record:
                yield record
            record, last = {}, ""
        elif line[0] in " \t" and last:
            record[last] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            last = key.strip()
            record[last] = value.strip()
    if record:
        yield record


def _distro_qualifier(distro: Distro) -> dict[str, str]:
    return {"distro": f"{distro.id}-{distro.version_id}"} if distro.id and distro.version_id else {}


def dpkg(text: str, distro: Distro) -> list[Package]:
    """Installed packages of a dpkg status file (or one status.d file, which has no Status field)."""
    out = []
    for r in stanzas(text):
        status = r.get("Status", "install ok installed").split()
        if status[-1:] != ["installed"] or "Package" not in r:
            continue
        arch, version = r.get("Architecture", ""), r.get("Version", "")
        source = r.get("Source", "").split(" (")[0]
        qualifiers = {"arch": arch, **_distro_qualifier(distro)}
        purl = PackageURL("deb", distro.id or "debian", r["Package"], version, qualifiers)
        out.append(Package(r["Package"], version, arch, purl.to_string(), source))
    return out


def apk(text: str, distro: Distro) -> list[Package]:
    """apk's installed database: one record per package, single-letter keys (P name, V version, A arch)."""
    out = []
    for r in stanzas(text):
        if "P" not in r:
            continue
        qualifiers = {"arch": r.get("A", ""), **_distro_qualifier(distro)}
        purl = PackageURL("apk", distro.id or "alpine", r["P"], r.get("V", ""), qualifiers)
        out.append(Package(r["P"], r.get("V", ""), r.get("A", ""), purl.to_string(), r.get("o", ""), r.get("L", "")))
    return out
