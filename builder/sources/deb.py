"""One file out of a .deb, in Python: an ar archive whose data.tar.* holds the package's files.

No dpkg is needed, so this runs on any host. Only a regular file is taken
(a symlink or device under the wanted name is refused), and every
compression Debian's dpkg writes for data.tar is read: gzip, xz, bzip2,
lzma and none. zstd (used by Ubuntu, not by Debian's archive) is refused
with a message that says so.
"""

from __future__ import annotations

import io
import tarfile

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


def extract(deb: bytes, path: str) -> bytes:
    """The content of the regular file `path` (e.g. /usr/sbin/gosu) in the package's data archive."""
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
    try:
        with tarfile.open(fileobj=io.BytesIO(parts[name]), mode="r:*") as tar:
            for info in tar:
                if info.name.lstrip("./") != path.lstrip("/"):
                    continue
                if not info.isreg():
                    raise DebError(f"{path} in {name} is not a regular file")
                return tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DebError(f"{name} cannot be read: {e}") from None
    raise DebError(f"has no {path}")
