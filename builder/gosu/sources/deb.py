"""One file out of a .deb, in Python: an ar archive whose data.tar.* holds the package's files.

No dpkg is needed, so this runs on any host. Only a regular file is taken
(a symlink or device under the wanted name is refused), and every
compression Debian's dpkg writes for data.tar is read: gzip, xz, bzip2,
lzma and none. zstd (used by Ubuntu, not by Debian's archive) is refused
with a message that says so.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from pathlib import Path

AR_MAGIC = b"!<arch>\n"
HEADER = 60


class DebError(ValueError):
    """The .deb is malformed or lacks the wanted file; the message says which."""


def members(data: bytes) -> dict[str, bytes]:
    """{name: content} of an ar archive (the format of a .deb)."""
    if not data.startswith(AR_MAGIC):
        raise DebError("not a Debian package (no ar archive header)")
    out, pos = {}, len(AR_MAGIC)
    while pos + HEADER <= len(data):
        head = data[pos:pos + HEADER]
        if head[58:60] != b"`\n":
            raise DebError(f"damaged ar member header at byte {pos}")
        name = head[0:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(head[48:58].decode("ascii").strip())
        except ValueError:
            raise DebError(f"damaged ar member size at byte {pos}") from None
        start = pos + HEADER
        if start + size > len(data):
            raise DebError(f"member {name} is truncated ({size} bytes declared)")
        out[name] = data[start:start + size]
        pos = start + size + (size & 1)  # members are 2-byte aligned
    return out


def _data_tar(deb: bytes) -> tuple[str, bytes]:
    parts = members(deb)
    if parts.get("debian-binary", b"").strip() != b"2.0":
        raise DebError("not a format 2.0 Debian package (debian-binary is missing or says otherwise)")
    names = [n for n in parts if n.startswith("data.tar")]
    if not names:
        raise DebError("has no data.tar member")
    name = names[0]
    if name.endswith(".zst"):
        raise DebError(f"{name} is zstd-compressed, which Debian's archive does not use; take the package "
                       "from a Debian mirror")
    return name, parts[name]


def extract(deb: bytes, path: str) -> bytes:
    """The content of the regular file `path` (e.g. /usr/sbin/gosu) in the package's data archive."""
    name, data = _data_tar(deb)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for info in tar:
                if info.name.lstrip("./") != path.lstrip("/"):
                    continue
                if not info.isreg():
                    raise DebError(f"{path} in {name} is not a regular file")
                return tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DebError(f"{name} cannot be read: {e}") from None
    raise DebError(f"has no {path}")


def _clean(name: str) -> str:
    path = posixpath.normpath("/" + name.lstrip("./") if name not in (".", "./") else "/")
    return path.lstrip("/")


def files_under(deb: bytes, prefix: str) -> dict[str, bytes]:
    """{path relative to prefix: content} of every regular file below the directory `prefix`.

    A symlink below it is refused: a Go module's source must be plain files.
    """
    name, data = _data_tar(deb)
    root = prefix.strip("/") + "/"
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for info in tar:
                path = _clean(info.name)
                if not path.startswith(root):
                    continue
                if info.issym() or info.islnk():
                    raise DebError(f"{path} in {name} is a link; only plain files are taken")
                if info.isreg():
                    out[path[len(root):]] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DebError(f"{name} cannot be read: {e}") from None
    if not out:
        raise DebError(f"has no files under /{root}")
    return out


def unpack(deb: bytes, dest: Path) -> int:
    """Unpack the whole data archive below `dest`, keeping modes and relative symlinks; returns the file count.

    Directories, regular files and symlinks only; a member or a link target
    that would land outside `dest` is refused, so a package cannot write
    anywhere else on the host.
    """
    name, data = _data_tar(deb)
    count, top = 0, dest.resolve()
    links = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_symlink()} if dest.exists() else set()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for info in tar:
                path = _clean(info.name)
                if not path:
                    continue
                target = dest / path
                if path in links:
                    raise DebError(f"{path} in {name} would replace a symlink")
                parts = path.split("/")
                # Lexical checks cannot see through a chain of links; where a path below one really lands can.
                if any("/".join(parts[:i]) in links for i in range(1, len(parts))):
                    real = target.parent.resolve()
                    if real != top and top not in real.parents:
                        raise DebError(f"{path} in {name} would be written outside the package's tree")
                if info.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    target.chmod(0o755)
                elif info.isreg():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(info).read())
                    # Only the execute bits matter; the rest is fixed so the tree is the same under any umask.
                    target.chmod(0o755 if info.mode & 0o111 else 0o644)
                    count += 1
                elif info.issym():
                    link = info.linkname
                    inside = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
                    if link.startswith("/") or inside == ".." or inside.startswith("../"):
                        raise DebError(f"{path} in {name} links to {link}, outside the package's tree")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.symlink_to(link)
                    links.add(path)
                    count += 1
                else:
                    raise DebError(f"{path} in {name} is neither a file, a directory nor a symlink")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DebError(f"{name} cannot be unpacked: {e}") from None
    return count
