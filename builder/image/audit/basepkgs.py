"""An image's package database and os-release, read from its layers in order, whiteouts honoured.

The same layer walk the build does (assembly/basefs.py), over other files:
dpkg's status (and status.d/, as distroless has), apk's installed database and
os-release. What each layer holds of them is kept in the image store, keyed
by the layer's digest, so a second SBOM of the same base reads no layer.
"""

from __future__ import annotations

import io
import tarfile

from builder.image.assembly import basefs
from builder.image.assembly.store import Store, digest_of
from builder.core.registry import Registry
from builder.image.audit import packages

# Bump when what is kept changes: cached extracts are keyed by it.
VERSION = "1"
FILES = (packages.DPKG_STATUS, packages.APK_INSTALLED, *packages.OS_RELEASE)


class BasePackagesError(ValueError):
    pass


def _wanted(path: str) -> bool:
    return (path in FILES or path.startswith(packages.DPKG_STATUS_D + "/") or path == packages.DPKG_STATUS_D
            or path.rsplit("/", 1)[-1].startswith(basefs.WHITEOUT))


def extract(blob: bytes) -> bytes:
    """A layer -> a plain tar of only the package database files and whiteouts (basefs.apply's input)."""
    tar = basefs.inflate(blob)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for name, hdr, link, offset, size in basefs.scan_members(tar):
            path = basefs.norm_path(name)
            if not path or not _wanted(path):
                continue
            kind = hdr[156:157] or b"0"
            regular = kind in (b"0", b"\0", b"7")
            data = tar[offset:offset + size] if regular else b""
            kept = tarfile.TarInfo(path)
            kept.type = tarfile.REGTYPE if regular else kind
            kept.mode = basefs.header_number(hdr[100:108])
            kept.linkname, kept.size = link, len(data)
            dst.addfile(kept, io.BytesIO(data) if regular else None)
    return out.getvalue()


def _layer(store: Store, registry: Registry, repo: str, digest: str) -> bytes:
    key = f"{VERSION}-{digest.split(':', 1)[1]}"
    known = store.get_ref("pkgdb", key)
    cached = store.get(known) if known else None
    if cached is not None:
        return cached
    blob = store.get(digest)
    if blob is None:
        blob = registry.get_blob(repo, digest)
        if digest_of(blob) != digest:
            raise BasePackagesError(f"layer {digest[:19]} from {registry.host}/{repo} does not match its digest")
    part = extract(blob)
    store.put_ref("pkgdb", key, store.put(part))
    return part


def read(store: Store, registry: Registry, repo: str, layers: list[dict]) -> basefs.BaseFs:
    """The package database files as the image's layers leave them (hard links into them are not followed)."""
    tree: dict = {}
    for desc in layers:
        try:
            basefs.apply(tree, _layer(store, registry, repo, desc["digest"]))
        except basefs.BaseFsError:
            continue  # a hard link to a file outside what is read: not a package database file
    return basefs.BaseFs(tree)


def _text(fs: basefs.BaseFs, path: str, depth: int = 0) -> str | None:
    e = fs.get(path)
    if e is not None and e.kind == "symlink" and depth < 8:
        target = e.target if e.target.startswith("/") else f"{path.rpartition('/')[0]}/{e.target}"
        parts: list[str] = []
        for p in target.strip("/").split("/"):
            if p == "..":
                parts = parts[:-1]
            elif p not in ("", "."):
                parts.append(p)
        return _text(fs, "/".join(parts), depth + 1)
    return fs.text(path)


def distro(fs: basefs.BaseFs) -> packages.Distro:
    for path in packages.OS_RELEASE:
        text = _text(fs, path)
        if text:
            return packages.os_release(text)
    return packages.Distro("", "")


def installed(fs: basefs.BaseFs) -> tuple[packages.Distro, list[packages.Package], str]:
    """(distro, packages sorted by name and arch, which database they came from: dpkg, apk or "")."""
    d = distro(fs)
    if fs.get(packages.APK_INSTALLED):
        return d, sorted(packages.apk(fs.text(packages.APK_INSTALLED) or "", d), key=_key), "apk"
    found = []
    if fs.get(packages.DPKG_STATUS):
        found += packages.dpkg(fs.text(packages.DPKG_STATUS) or "", d)
    for e in fs.under(packages.DPKG_STATUS_D):
        if e.kind == "file" and not e.path.endswith(".md5sums"):
            found += packages.dpkg(e.data.decode("utf-8", "replace"), d)
    unique = {(p.name, p.arch): p for p in found}
    return d, sorted(unique.values(), key=_key), "dpkg" if found else ""


def _key(p: packages.Package) -> tuple[str, str]:
    return p.name, p.arch
