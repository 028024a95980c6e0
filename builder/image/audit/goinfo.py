"""Go build information read out of a binary, in Python: what `go version -m` prints.

A Go binary carries a `\\xff Go buildinf:` header (in the .go.buildinfo
section, aligned to 16 bytes). Since Go 1.18 the toolchain version and the
module list follow it inline as varint-prefixed strings; before that the
header holds two pointers to Go string headers in the binary's data, which
are read through the ELF program headers. Security teams need both: gosu 1.14
was built with Go 1.16.7.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"\xff Go buildinf:"
HEADER = 32
FLAG_BIG_ENDIAN, FLAG_INLINE = 0x1, 0x2


class GoInfoError(ValueError):
    """Not a Go binary, or its build information cannot be read; the message says which."""


@dataclass(frozen=True)
class Module:
    path: str
    version: str
    sum: str = ""
    replaced_by: "Module | None" = None


@dataclass(frozen=True)
class BuildInfo:
    go_version: str                 # e.g. go1.24.4
    path: str = ""                  # the main package's import path
    main: Module | None = None
    deps: tuple[Module, ...] = ()
    settings: tuple[tuple[str, str], ...] = field(default=())


def read(path: Path) -> BuildInfo:
    return parse(path.read_bytes(), str(path))


def parse(data: bytes, name: str = "binary") -> BuildInfo:
    at = _find_header(data, name)
    ptr_size, flags = data[at + 14], data[at + 15]
    if flags & FLAG_INLINE:
        version, pos = _varint_string(data, at + HEADER, name)
        modinfo, _ = _varint_string(data, pos, name)
    else:
        if ptr_size not in (4, 8):
            raise GoInfoError(f"{name}: Go build information has pointer size {ptr_size}")
        order = ">" if flags & FLAG_BIG_ENDIAN else "<"
        elf = _Elf(data, name)
        fmt = order + ("Q" if ptr_size == 8 else "I")
        version_ptr, modinfo_ptr = (struct.unpack_from(fmt, data, at + 16 + i * ptr_size)[0] for i in (0, 1))
        version = elf.go_string(version_ptr, ptr_size, order)
        modinfo = elf.go_string(modinfo_ptr, ptr_size, order)
    if not version.startswith(b"go") and not version.startswith(b"devel"):
        raise GoInfoError(f"{name}: Go build information names no Go version ({version[:40]!r})")
    return _modinfo(version.decode("utf-8", "replace"), _unframe(modinfo).decode("utf-8", "replace"))


def _find_header(data: bytes, name: str) -> int:
    at = data.find(MAGIC)
    while at >= 0 and at % 16:
        at = data.find(MAGIC, at + 1)
    if at < 0 or at + HEADER > len(data):
        raise GoInfoError(f"{name}: no Go build information (not a Go binary, or built before Go 1.13)")
    return at


def _varint_string(data: bytes, pos: int, name: str) -> tuple[bytes, int]:
    length, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise GoInfoError(f"{name}: truncated Go build information")
        b = data[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    if pos + length > len(data):
        raise GoInfoError(f"{name}: truncated Go build information")
    return data[pos:pos + length], pos + length


def _unframe(modinfo: bytes) -> bytes:
    # The module info string is framed by 16 bytes on each side (cmd/go's modinfo markers), the last
    # line of the text itself ending just before the closing 16.
    if len(modinfo) >= 33 and modinfo[-17:-16] == b"\n":
        return modinfo[16:-16]
    return modinfo


def _modinfo(version: str, text: str) -> BuildInfo:
    path, main, deps, settings = "", None, [], []
    for line in text.splitlines():
        parts = line.split("\t")
        kind, rest = parts[0], parts[1:]
        if kind == "path" and rest:
            path = rest[0]
        elif kind in ("mod", "dep") and rest:
            m = Module(rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "")
            if kind == "mod":
                main = m
            else:
                deps.append(m)
        elif kind == "=>" and rest:
            new = Module(rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "")
            if deps:
                deps[-1] = Module(deps[-1].path, deps[-1].version, deps[-1].sum, new)
            elif main:
                main = Module(main.path, main.version, main.sum, new)
        elif kind == "build" and rest:
            key, _, value = rest[0].partition("=")
            settings.append((key, value))
    return BuildInfo(version, path, main, tuple(deps), tuple(settings))


class _Elf:
    """Just enough ELF to turn a virtual address into bytes of the file (PT_LOAD segments)."""

    def __init__(self, data: bytes, name: str):
        if data[:4] != b"\x7fELF":
            raise GoInfoError(f"{name}: Go build information before Go 1.18 is read from ELF binaries only")
        self.data, self.name = data, name
        cls64, order = data[4] == 2, ">" if data[5] == 2 else "<"
        if cls64:
            phoff, = struct.unpack_from(order + "Q", data, 0x20)
            phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
        else:
            phoff, = struct.unpack_from(order + "I", data, 0x1C)
            phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
        self.segments = []
        for i in range(phnum):
            off = phoff + i * phentsize
            if cls64:
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(order + "IIQQQQ", data, off)
            else:
                p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(order + "IIIII", data, off)
            if p_type == 1:  # PT_LOAD
                self.segments.append((p_vaddr, p_offset, p_filesz))

    def read(self, addr: int, size: int) -> bytes:
        for vaddr, offset, filesz in self.segments:
            if vaddr <= addr and addr + size <= vaddr + filesz:
                start = offset + addr - vaddr
                return self.data[start:start + size]
        raise GoInfoError(f"{self.name}: Go build information points outside the binary (0x{addr:x})")

    def go_string(self, addr: int, ptr_size: int, order: str) -> bytes:
        fmt = order + ("QQ" if ptr_size == 8 else "II")
        data_ptr, length = struct.unpack(fmt, self.read(addr, 2 * ptr_size))
        return self.read(data_ptr, length) if length else b""


def elf_sections(data: bytes) -> set[str]:
    """The section names of an ELF file (empty if it is not one or has no section headers)."""
    if data[:4] != b"\x7fELF":
        return set()
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if wide:
            shoff, = struct.unpack_from(order + "Q", data, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x3A)
        else:
            shoff, = struct.unpack_from(order + "I", data, 0x20)
            shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x2E)
        fmt = order + ("IIQQQQ" if wide else "IIIIII")

        def header(i):
            return struct.unpack_from(fmt, data, shoff + i * shentsize)
        strtab = header(shstrndx)
        base = strtab[4]
        names = set()
        for i in range(shnum):
            at = base + header(i)[0]
            names.add(data[at:data.index(b"\0", at)].decode("ascii", "replace"))
        return names
    except (struct.error, ValueError, IndexError):
        return set()
