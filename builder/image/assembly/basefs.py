"""The parts of a base image's file system the build edits, read from its layers in order.

Layers are applied the way an engine applies them: each one's whiteouts
(`.wh.NAME` deletes NAME, `.wh..wh..opq` empties a directory of what lower
layers put there) first, then its entries. Only what the build needs is
kept: everything under etc/ (account files, login.defs, default/useradd,
skel) with content, and the metadata of a few parent directories and tools.
"""

from __future__ import annotations

import io
import tarfile

try:  # ISA-L inflates about twice as fast; the bytes are the same as zlib's
    from isal import isal_zlib as zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    import zlib
from dataclasses import dataclass

from builder.image.assembly.layer import DIR, FILE, SYMLINK, Entry

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CONTENT_UNDER = ("etc/",)
# Metadata only: parents of what the layer writes, and the tools that say which account flavor the base has.
META = frozenset({
    "etc", "home", "home/ops", "app", "usr", "usr/local", "usr/local/bin", "var", "var/mail", "var/spool",
    "var/spool/mail", "bin", "sbin", "usr/bin", "usr/sbin", "bin/busybox", "usr/sbin/useradd", "sbin/useradd",
    "usr/sbin/adduser", "sbin/adduser",
})
# Bump when what is kept changes: cached subsets are keyed by it.
SUBSET_VERSION = "2"


class BaseFsError(ValueError):
    pass


def wanted(path: str) -> bool:
    return path in META or path.startswith(CONTENT_UNDER) or path.rsplit("/", 1)[-1].startswith(WHITEOUT)


def norm_path(name: str) -> str:
    return name.removeprefix("./").strip("/")


def inflate(blob: bytes) -> bytes:
    if blob[:2] != b"\x1f\x8b":
        if blob[:4] == b"\x28\xb5\x2f\xfd":
            raise BaseFsError("a base layer is zstd-compressed, which the build cannot read yet; use a gzip base")
        return blob
    out, rest = [], blob
    while rest[:2] == b"\x1f\x8b":  # gzip allows several members back to back
        d = zlib.decompressobj(31)
        out.append(d.decompress(rest))
        rest = d.unused_data
    return b"".join(out)


def header_number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # base-256 (GNU) for values octal cannot hold
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax(records: bytes) -> dict[str, str]:
    out, pos = {}, 0
    while pos < len(records):
        length = int(records[pos:records.index(b" ", pos)])
        key, _, value = records[records.index(b" ", pos) + 1:pos + length - 1].partition(b"=")
        out[key.decode()] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def scan_members(tar: bytes):
    """(path, header block, linkname, data offset, size) of each member, pax and GNU long names applied.

    A plain scan of the headers: tarfile spends most of a base read parsing
    members the build never looks at.
    """
    pos, pending = 0, {}
    while pos + 512 <= len(tar):
        hdr = tar[pos:pos + 512]
        if hdr.count(0) == 512:
            return
        size, kind = header_number(hdr[124:136]), hdr[156:157]
        body = pos + 512
        if kind in (b"x", b"g", b"L", b"K"):
            raw = tar[body:body + size]
            if kind == b"x":
                pending.update(_pax(raw))
            elif kind == b"L":
                pending["path"] = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif kind == b"K":
                pending["linkpath"] = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
            pos = body + (size + 511) // 512 * 512
            continue
        name = hdr[:100].split(b"\0", 1)[0]
        if hdr[257:263] == b"ustar\0" and hdr[345:346] != b"\0":
            name = hdr[345:500].split(b"\0", 1)[0] + b"/" + name
        path = pending.get("path") or name.decode("utf-8", "surrogateescape")
        link = pending.get("linkpath") or hdr[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        size = int(pending.get("size", size))
        yield path, hdr, link, body, size
        pending = {}
        pos = body + (size + 511) // 512 * 512


def subset(blob: bytes) -> bytes:
    """A compressed or plain layer -> a plain tar of only its wanted entries (whiteouts included), in order."""
    tar = inflate(blob)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for name, hdr, link, offset, size in scan_members(tar):
            path = norm_path(name)
            if not path or not wanted(path):
                continue
            kind = hdr[156:157] or b"0"
            regular = kind in (b"0", b"\0", b"7")
            data = tar[offset:offset + size] if regular and path.startswith(CONTENT_UNDER) else b""
            kept = tarfile.TarInfo(path)
            kept.type = tarfile.REGTYPE if regular else kind
            kept.mode = header_number(hdr[100:108])
            kept.uid, kept.gid = header_number(hdr[108:116]), header_number(hdr[116:124])
            kept.linkname, kept.size = link, len(data)
            dst.addfile(kept, io.BytesIO(data) if regular else None)
    return out.getvalue()


@dataclass
class BaseFs:
    entries: dict[str, Entry]

    def get(self, path: str) -> Entry | None:
        return self.entries.get(path.strip("/"))

    def data(self, path: str) -> bytes | None:
        e = self.get(path)
        return e.data if e and e.kind == FILE else None

    def text(self, path: str) -> str | None:
        d = self.data(path)
        return d.decode("utf-8", "surrogateescape") if d is not None else None

    def under(self, path: str) -> list[Entry]:
        prefix = path.strip("/") + "/"
        return sorted((e for p, e in self.entries.items() if p.startswith(prefix)), key=lambda e: e.path)


def _remove(tree: dict[str, Entry], path: str, keep_self: bool) -> None:
    prefix = path + "/"
    for p in [p for p in tree if p.startswith(prefix) or (p == path and not keep_self)]:
        del tree[p]


def apply(tree: dict[str, Entry], subset_tar: bytes) -> None:
    """Apply one layer (as `subset` returns it) on top of `tree`."""
    with tarfile.open(fileobj=io.BytesIO(subset_tar), mode="r:") as t:
        members = t.getmembers()
        for ti in members:
            parent, _, name = ti.name.rpartition("/")
            if name == OPAQUE:
                _remove(tree, parent, keep_self=True)
            elif name.startswith(WHITEOUT):
                _remove(tree, f"{parent}/{name[len(WHITEOUT):]}".strip("/"), keep_self=False)
        for ti in members:
            if ti.name.rsplit("/", 1)[-1].startswith(WHITEOUT):
                continue
            if ti.isdir():
                e = Entry(ti.name, DIR, ti.mode, ti.uid, ti.gid)
            elif ti.issym():
                e = Entry(ti.name, SYMLINK, ti.mode, ti.uid, ti.gid, target=ti.linkname)
            elif ti.isreg():
                e = Entry(ti.name, FILE, ti.mode, ti.uid, ti.gid, t.extractfile(ti).read())
            elif ti.islnk():
                src = tree.get(norm_path(ti.linkname))
                if src is None or src.kind != FILE:
                    raise BaseFsError(f"base layer: {ti.name} is a hard link to {ti.linkname}, which is not a "
                                      "regular file the build read")
                e = Entry(ti.name, FILE, src.mode, src.uid, src.gid, src.data)
            else:
                continue  # devices and fifos: nothing the build edits
            if e.kind != DIR or tree.get(e.path, e).kind != DIR:
                _remove(tree, e.path, keep_self=False)
            tree[e.path] = e


def merge(subsets: list[bytes]) -> BaseFs:
    tree: dict[str, Entry] = {}
    for s in subsets:
        apply(tree, s)
    return BaseFs(tree)
