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
from dataclasses import dataclass

from .layer import DIR, FILE, SYMLINK, Entry

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
SUBSET_VERSION = "1"


class BaseFsError(ValueError):
    pass


def wanted(path: str) -> bool:
    return path in META or path.startswith(CONTENT_UNDER) or path.rsplit("/", 1)[-1].startswith(WHITEOUT)


def _norm(name: str) -> str:
    return name.removeprefix("./").strip("/")


def subset(blob: bytes) -> bytes:
    """A compressed or plain layer -> a plain tar of only its wanted entries (whiteouts included), in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|*") as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for ti in src:
            path = _norm(ti.name)
            if not path or not wanted(path):
                continue
            data = src.extractfile(ti).read() if ti.isreg() and path.startswith(CONTENT_UNDER) else b""
            kept = tarfile.TarInfo(path)
            kept.type, kept.mode, kept.uid, kept.gid = ti.type, ti.mode, ti.uid, ti.gid
            kept.linkname, kept.size = ti.linkname, len(data)
            dst.addfile(kept, io.BytesIO(data) if ti.isreg() else None)
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
                src = tree.get(_norm(ti.linkname))
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
