"""One file out of a .deb, in Python: an ar archive whose data.tar.* holds the package's files.

No dpkg is needed, so this runs on any host. The .deb container is read by
python-debian's `debfile.DebFile`, Debian's own reader: the ar archive,
debian-binary, the control and data members and the data.tar's compression.
Every compression Debian's dpkg writes for data.tar is read: gzip, xz,
bzip2, lzma and none. zstd (used by Ubuntu, not by Debian's archive: every
one of 162 .debs sampled from trixie and trixie-backports, gosu and the Go
toolchain among them, carries data.tar.xz) is refused with a message that
says so, before DebFile would hand it to an external `unzstd`.

What is taken out of the data.tar stays here, walked member by member:
DebFile's get_content() hands back a link's target in place of the link
(tarfile's extractfile() resolves it) and DebFile has no unpacking of its
own, while this module takes only regular files (a symlink or device under
the wanted name is refused) and unpacks nothing outside the destination.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path

from debian import arfile, debfile

# The names dpkg may give the data member: data.tar, or data.tar.<compression>.
DATA_MEMBERS = (debfile.DATA_PART, *(f"{debfile.DATA_PART}.{ext}" for ext in debfile.PART_EXTS))


class DebError(ValueError):
    """The .deb is malformed or lacks the wanted file; the message says which."""


@contextlib.contextmanager
def _data_tar(deb: bytes, doing: str = "read") -> Iterator[tuple[str, tarfile.TarFile]]:
    """(name of the data member, its tar archive open for reading); read errors say `doing`."""
    try:
        package = debfile.DebFile(fileobj=io.BytesIO(deb))
    except debfile.DebError as e:
        raise DebError(f"not a Debian package ({e})") from None
    except arfile.ArError:
        raise DebError("not a Debian package (no ar archive header)") from None
    except (OSError, ValueError) as e:
        raise DebError(f"damaged ar member header ({e})") from None
    with package:
        if package.version != b"2.0":
            raise DebError("not a format 2.0 Debian package (debian-binary is missing or says otherwise)")
        name = next(n for n in package.getnames() if n in DATA_MEMBERS)
        member = package.getmember(name)
        if len(member.read()) != member.size:
            raise DebError(f"member {name} is truncated ({member.size} bytes declared)")
        member.seek(0)
        if name.endswith(".zst"):
            raise DebError(f"{name} is zstd-compressed, which Debian's archive does not use; take the package "
                           "from a Debian mirror")
        try:
            tar = package.data.tgz()
        except debfile.DebError as e:
            raise DebError(f"{name} cannot be {doing}: {e}") from None
        try:
            yield name, tar
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DebError(f"{name} cannot be {doing}: {e}") from None


def extract(deb: bytes, path: str) -> bytes:
    """The content of the regular file `path` (e.g. /usr/sbin/gosu) in the package's data archive."""
    with _data_tar(deb) as (name, tar):
        for info in tar:
            if info.name.lstrip("./") != path.lstrip("/"):
                continue
            if not info.isreg():
                raise DebError(f"{path} in {name} is not a regular file")
            return tar.extractfile(info).read()
    raise DebError(f"has no {path}")


def _clean(name: str) -> str:
    path = posixpath.normpath("/" + name.lstrip("./") if name not in (".", "./") else "/")
    return path.lstrip("/")


def files_under(deb: bytes, prefix: str) -> dict[str, bytes]:
    """{path relative to prefix: content} of every regular file below the directory `prefix`.

    A symlink below it is refused: a Go module's source must be plain files.
    """
    root = prefix.strip("/") + "/"
    out: dict[str, bytes] = {}
    with _data_tar(deb) as (name, tar):
        for info in tar:
            path = _clean(info.name)
            if not path.startswith(root):
                continue
            if info.issym() or info.islnk():
                raise DebError(f"{path} in {name} is a link; only plain files are taken")
            if info.isreg():
                out[path[len(root):]] = tar.extractfile(info).read()
    if not out:
        raise DebError(f"has no files under /{root}")
    return out


def unpack(deb: bytes, dest: Path) -> int:
    """Unpack the whole data archive below `dest`, keeping modes and relative symlinks; returns the file count.

    Directories, regular files and symlinks only; a member or a link target
    that would land outside `dest` is refused, so a package cannot write
    anywhere else on the host.
    """
    count, top = 0, dest.resolve()
    links = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_symlink()} if dest.exists() else set()
    with _data_tar(deb, "unpacked") as (name, tar):
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
    return count
