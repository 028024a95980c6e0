"""A gosu-shaped release for all nine arches: small ELF files with the right headers, signed."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from builder.core import arches
from builder.core.arches import Arch

from tests.support.gpgkit import GpgTestKey


def fake_elf(arch: Arch, payload: bytes = b"") -> bytes:
    order = "<" if arch.elf_data == 1 else ">"
    ident = b"\x7fELF" + bytes([arch.elf_class, arch.elf_data, 1]) + b"\0" * 9
    header = ident + struct.pack(order + "HHI", 2, arch.elf_machine, 1)
    return header + b"\0" * (64 - len(header)) + payload + os.urandom(4096)


def make_release(root: Path, version: str, key: GpgTestKey, arch_list=arches.ARCHES, armor: bool = True,
                 sums: bool = True, binaries: dict[str, bytes] | None = None) -> dict[str, str]:
    """Lay out <root>/<version>/gosu-<arch>(.asc) [+ SHA256SUMS(.asc)]; return {arch: sha256}."""
    d = root / version
    d.mkdir(parents=True, exist_ok=True)
    digests = {}
    for a in arch_list:
        data = (binaries or {}).get(a.dpkg) or fake_elf(a, f"gosu {version} {a.dpkg}".encode())
        f = d / a.release_file
        f.write_bytes(data)
        key.sign(f, armor=armor)
        digests[a.dpkg] = hashlib.sha256(data).hexdigest()
    if sums:
        s = d / "SHA256SUMS"
        s.write_text("".join(f"{h}  gosu-{a}\n" for a, h in sorted(digests.items())))
        key.sign(s, armor=armor)
    return digests
