"""Root file systems for the local registry's bases, as one layer each: Alpine's release tarballs, Debian minbase.

An Alpine minirootfs is already a gzip'd tar: it is checked against the
release's checksums.sha512 and used as the layer blob byte for byte. Debian
is bootstrapped (mmdebstrap or debootstrap, `local.debian_bootstrap`) into a
directory, then packed here into a tar whose bytes depend only on the tree:
sorted entries, numeric owners, no user names, every mtime clamped to the
suite's Release date (SOURCE_DATE_EPOCH for the bootstrap too).
"""

from __future__ import annotations

import calendar
import email.utils
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from builder.core import arches, emulation
from builder.image.assembly.layer import gzip_bytes
from builder.core.host import SetupError, apt_install

TOOLS = ("mmdebstrap", "debootstrap")
# Bump when the same bootstrap would be packed into a different layer: cached layers (and seeded children, whose
# recipe names this) made the old way are then made again.
LAYER_FORMAT = "1"
# Left out of the Debian layer: the engine provides /dev, /proc and /sys and bind-mounts these files, and
# their content (the build host's resolver and name) would make the layer differ per machine.
SKIP_UNDER = ("dev/", "proc/", "sys/")
SKIP_FILES = ("etc/resolv.conf", "etc/hostname")
# What minideb trims too (mmdebstrap already does; debootstrap does not): package caches and lists are dead weight in an image.
TRIM_UNDER = ("var/cache/apt/archives/", "var/lib/apt/lists/")


class NotSeedable(SetupError):
    """This machine lacks what a base needs (an Alpine tarball): the arch stays configured, just not here."""


@dataclass(frozen=True)
class RootLayer:
    blob: bytes        # gzip'd tar, pushed as is
    diff_id: str       # sha256 of the uncompressed tar
    epoch: int         # the newest mtime in it: the image's `created`
    source: str        # what it was made from, for history and messages

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.blob).hexdigest()


def alpine_name(version: str, arch: str) -> str:
    return f"alpine-minirootfs-{version}-{arches.get(arch, arches.IMAGE_ARCHES).alpine}.tar.gz"


def alpine_sums(directory: Path) -> dict[str, str]:
    """file name -> sha512 from the release's checksums.sha512 ({} when the file is absent)."""
    try:
        text = (directory / "checksums.sha512").read_text()
    except OSError:
        return {}
    return {f[-1]: f[0] for f in (line.split() for line in text.splitlines()) if len(f) == 2}


def alpine_tarball(directory: Path, version: str, arch: str) -> tuple[Path, str]:
    """(tarball, its sha512) once it matches checksums.sha512; NotSeedable when it is not here."""
    name = alpine_name(version, arch)
    tarball, sums = directory / name, directory / "checksums.sha512"
    if not tarball.is_file():
        raise NotSeedable(f"{arch}: not seedable here: {directory} has no {name} (add the official tarball and its "
                          f"line in {sums.name} to seed it)")
    expected = alpine_sums(directory).get(name)
    actual = hashlib.sha512(tarball.read_bytes()).hexdigest()
    if expected != actual:
        raise SetupError(f"{tarball}: sha512 {actual[:16]}... does not match {sums} "
                         f"({(expected or 'no entry')[:16]}...); refusing to seed from it (fetch the release again)")
    return tarball, actual


def _newest_mtime(tar: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
        return max((int(ti.mtime) for ti in t), default=0)


def alpine_layer(directory: Path, version: str, arch: str) -> RootLayer:
    tarball, sha512 = alpine_tarball(directory, version, arch)
    blob = tarball.read_bytes()
    tar = gzip.decompress(blob)
    return RootLayer(blob, "sha256:" + hashlib.sha256(tar).hexdigest(), _newest_mtime(tar),
                     f"{tarball.name} (sha512 {sha512})")


def release_epoch(mirror: str, suite: str) -> int:
    """The Date of the suite's Release file: the archive state a bootstrap sees, as a timestamp."""
    url = f"{mirror.rstrip('/')}/dists/{suite}/Release"
    try:
        with requests.get(url, timeout=30, stream=True) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if line.startswith(b"Date:"):
                    return calendar.timegm(email.utils.parsedate_tz(line[5:].decode().strip())[:9])
    except (requests.RequestException, TypeError) as e:
        raise SetupError(f"cannot read the Date of {url}: {e}; check local.debian_mirror") from None
    raise SetupError(f"{url} has no Date field; check local.debian_mirror")


def bootstrap_command(tool: str, suite: str, arch: str, target: Path, mirror: str) -> list[str]:
    if tool == "mmdebstrap":
        # Root mode: the tree is written as root, as debootstrap does, so both tools do the same work. The hook
        # merges /usr the way debootstrap does; without it bookworm gets the usrmerge package and with it a full
        # perl (13 MB more, compressed).
        return ["mmdebstrap", "--mode=root", "--variant=minbase", f"--arch={arch}",
                "--hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr", suite, str(target), mirror]
    if tool == "debootstrap":
        return ["debootstrap", "--variant=minbase", f"--arch={arch}", suite, str(target), mirror]
    raise SetupError(f"local.debian_bootstrap is {tool!r}: use one of {', '.join(TOOLS)}")


def prepare(tool: str, arch_names: list[str], log) -> None:
    """The bootstrap tool and the qemu handler of each arch, installed and switched on once, before bootstraps
    run side by side (each then finds them in place)."""
    apt_install([tool], log)
    # The second stage runs the arch's own maintainer scripts.
    emulation.ensure(arch_names, log, "seed", install=lambda pkgs: apt_install(pkgs, log))


def bootstrap(tool: str, suite: str, arch: str, mirror: str, target: Path, epoch: int, log) -> None:
    """A Debian minbase tree in `target` (which must not exist yet), built by `tool`."""
    cmd = bootstrap_command(tool, suite, arch, target, mirror)
    prepare(tool, [arch], log)
    if tool == "mmdebstrap":
        # How packages are fetched and how much is said, not which: out of the layer's key (bootstrap_command).
        # apt retries a dropped connection to the mirror rather than failing the seed, and its error lines,
        # which --quiet would hide, name what failed.
        cmd[1:1] = ["--aptopt=Acquire::Retries \"3\""]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if p.returncode != 0:
        raise SetupError(bootstrap_failure(tool, suite, arch, mirror, p.returncode, p.stdout.decode(errors="replace")))


def bootstrap_failure(tool: str, suite: str, arch: str, mirror: str, code: int, output: str) -> str:
    """What went wrong, in apt's own error lines rather than the tail of a long log."""
    head = f"{tool} of Debian {suite} {arch} failed (exit {code})"
    missing = re.findall(r"Failed to fetch (\S+)\s+404", output)
    if missing:
        # Seen on mirrors mid-sync or mirrored in part: the index names a point release whose files some
        # arches do not have yet. apt fails the same way; no retry helps until the mirror catches up.
        return (f"{head}: {mirror} lists {len(missing)} {suite} {arch} package(s) it does not serve (404), "
                f"e.g. {missing[0].rsplit('/', 1)[-1]}: the mirror lacks part of {suite} for {arch}. Point "
                f"local.debian_mirror at a complete mirror, or build a release whose stand-in suite it serves "
                f"(invoke releases)")
    errors = [line for line in output.splitlines() if line.startswith(("E:", "Err:"))]
    return f"{head}: " + ("\n".join(errors[-8:]) if errors else output[-600:])


def _keep(path: str, is_file: bool) -> bool:
    if path.startswith(SKIP_UNDER) or path in SKIP_FILES:
        return False
    return not (is_file and any(path.startswith(p) and "/" not in path[len(p):] for p in TRIM_UNDER))


def tar_tree(root: Path, epoch: int) -> bytes:
    """The tree as a tar: sorted, numeric owners, mtimes clamped to `epoch`, hard links kept as links."""
    buf = io.BytesIO()

    def clean(ti: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not _keep(ti.name.removeprefix("./"), ti.isfile()):
            return None
        ti.uname = ti.gname = ""
        ti.mtime = min(int(ti.mtime), epoch)
        return ti

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        # tarfile.add walks directories in sorted order; the filter drops what the engine provides.
        tar.add(str(root), arcname=".", filter=clean)
    return buf.getvalue()


def debian_key(tool: str, suite: str, arch: str, mirror: str) -> str:
    """Everything a Debian layer is made from but the archive's state: the command and how its tree is packed."""
    cmd = bootstrap_command(tool, suite, arch, Path("TARGET"), mirror)
    return hashlib.sha256(json.dumps([LAYER_FORMAT, cmd, SKIP_UNDER, SKIP_FILES, TRIM_UNDER]).encode()).hexdigest()


def debian_layer(tool: str, suite: str, arch: str, mirror: str, cache: Path, log) -> RootLayer:
    """Debian `suite` minbase for `arch` as one layer; kept under `cache`, where the next seed finds it."""
    source = f"Debian {suite} minbase for {arch} by {tool} from {mirror}"
    key = debian_key(tool, suite, arch, mirror)[:16]
    blob_path, meta_path = cache / f"debian-{suite}-{arch}-{key}.tar.gz", cache / f"debian-{suite}-{arch}-{key}.meta"
    if blob_path.is_file() and meta_path.is_file():
        diff_id, epoch = meta_path.read_text().split()
        return RootLayer(blob_path.read_bytes(), diff_id, int(epoch), source)
    epoch = release_epoch(mirror, suite)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{tool}-{arch}-", dir=cache))
    try:
        start = time.monotonic()
        bootstrap(tool, suite, arch, mirror, work / "root", epoch, log)
        tar = tar_tree(work / "root", epoch)
        log.write(f"seed: {tool} --variant=minbase {suite} {arch}: {time.monotonic() - start:.0f} s\n")
        log.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    layer = RootLayer(gzip_bytes(tar), "sha256:" + hashlib.sha256(tar).hexdigest(), epoch, source)
    for path, data in ((blob_path, layer.blob), (meta_path, f"{layer.diff_id} {epoch}\n".encode())):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return layer
