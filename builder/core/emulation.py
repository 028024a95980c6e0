"""Foreign arches run under qemu-user-static: the step about to run one enables its binfmt handler first.

Building never needs this (images are assembled, not run); seeding a Debian
base and smoke-testing an image do.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Iterable

from builder.core.errors import BuilderError

# binfmt_misc entry names registered by Debian's qemu-user-static, per image arch.
QEMU = {"amd64": "x86_64", "arm64": "aarch64", "armel": "arm", "armhf": "arm", "armv7": "arm", "i386": "i386",
        "mips64el": "mips64el", "ppc64el": "ppc64le", "riscv64": "riscv64", "s390x": "s390x"}
NATIVE = {"x86_64": "amd64", "aarch64": "arm64"}
# Arches a host runs without emulation (x86-64 runs i386; most arm64 hosts run 32-bit ARM, but not all).
ALSO_NATIVE = {"amd64": ("i386",)}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Where Debian's binfmt-support keeps the formats packages declare (qemu-user-static's among them).
FORMATS = Path("/usr/share/binfmts")


class EmulationError(BuilderError):
    pass


def native_arch() -> str:
    return NATIVE.get(platform.machine(), platform.machine())


def foreign(arches: Iterable[str], host: str | None = None) -> list[str]:
    """The arches among `arches` this host needs qemu for."""
    host = host or native_arch()
    return [a for a in dict.fromkeys(arches) if a != host and a not in ALSO_NATIVE.get(host, ())]


def static_binary(arch: str) -> str:
    """qemu-user-static's emulator for `arch`, which runs a binary without any binfmt handler."""
    return f"qemu-{QEMU[arch]}-static"


def handler(arch: str, root: Path = BINFMT) -> Path:
    return root / f"qemu-{QEMU[arch]}"


def enabled(arch: str, root: Path = BINFMT) -> bool:
    entry = handler(arch, root)
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def ensure(arches: Iterable[str], log, step: str, install=None, root: Path = BINFMT,
           formats: Path = FORMATS) -> list[str]:
    """Enable the qemu handler of every foreign arch in `arches` before `step` runs them; returns the
    handlers it had to switch on (already-enabled ones cost a file read).

    `install(packages)` may install qemu-user-static when it is missing (`invoke up` does); without it,
    a missing package is an error that says what to run.
    """
    todo = sorted({QEMU[a] for a in foreign(arches) if not enabled(a, root)})
    if not todo:
        return []
    unknown = [q for q in todo if not (root / f"qemu-{q}").exists() and not (formats / f"qemu-{q}").exists()]
    if unknown:
        if install is None:
            raise EmulationError(f"{step} needs qemu for {', '.join(unknown)}, and qemu-user-static is not installed: "
                                 "run `invoke up`, or apt-get install qemu-user-static binfmt-support")
        install(["qemu-user-static", "binfmt-support"])
    if not (root / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(root)], check=True)
    for q in todo:
        entry = root / f"qemu-{q}"
        try:
            if not entry.exists():
                # Registers the handler Debian's package describes (flags F: the interpreter is opened now,
                # so it works inside containers too).
                subprocess.run(["update-binfmts", "--enable", f"qemu-{q}"], check=True, capture_output=True)
            elif entry.read_text().splitlines()[0].strip() != "enabled":
                entry.write_text("1")
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "strerror", None) or (getattr(e, "stderr", b"") or b"").decode().strip()
            raise EmulationError(f"{step} needs the qemu-{q} binfmt handler, which cannot be switched on ({detail}): "
                                 f"as root, update-binfmts --enable qemu-{q}, or echo 1 > {entry}") from None
    log.write(f"emulation: enabled qemu binfmt handler(s) {', '.join(f'qemu-{q}' for q in todo)} for {step}\n")
    log.flush()
    return todo
