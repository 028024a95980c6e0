"""Root file systems for the local registry's bases, as one layer each: Alpine's release tarballs, Debian minbase.

An Alpine minirootfs is already a gzip'd tar: it is checked against the
release's checksums.sha512 and used as the layer blob byte for byte. Debian
is bootstrapped (local/bootstrap.py) into a directory, then packed here into
a tar whose bytes depend only on the tree: sorted entries, numeric owners, no
user names, every mtime clamped to the suite's Release date
(SOURCE_DATE_EPOCH for the bootstrap too). Layers are cached by a key of how
they were made (debian_key).
"""

from __future__ import annotations

import calendar
import email.utils
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from builder.core import arches
from builder.image.assembly.layer import gzip_bytes
from builder.core.host import SetupError, say
from builder.local.bootstrap import APT_PARTIAL, STEPS_BOOKKEEPING, TARGET_STEPS, Refused, bootstrap, bootstrap_command, chrootless_tree, host_tools
from builder.config.settings import CHROOTLESS, EMULATED

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
    key: str = ""      # Debian: debian_key of how it was made (the recipe names it)

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


def debian_key(tool: str, suite: str, arch: str, mirror: str, mode: str = EMULATED) -> str:
    """Everything a Debian layer is made from but the archive's state: the command, how its tree is made and how
    it is packed."""
    cmd = bootstrap_command(tool, suite, arch, Path("TARGET"), mirror, mode)
    doc: list = [LAYER_FORMAT, cmd, SKIP_UNDER, SKIP_FILES, TRIM_UNDER]
    if mode == CHROOTLESS:
        # An emulated layer's key stays what it was before chrootless mode existed, so its cache and its
        # children stay valid.
        doc.append({"mode": mode, "as": "nobody under fakeroot", "target_steps": TARGET_STEPS,
                    "kept": STEPS_BOOKKEEPING, "root's": APT_PARTIAL,
                    "host": host_tools()})
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


@dataclass(frozen=True)
class Method:
    """How Debian trees are made: local.debian_bootstrap, local.debian_mode, local.emulation_fallback."""
    tool: str
    mode: str = EMULATED
    fallback: tuple[str, ...] = ()   # all, SUITE or SUITE/ARCH: where a chrootless refusal is made emulated

    def falls_back(self, suite: str, arch: str) -> bool:
        return bool({"all", suite, f"{suite}/{arch}"} & set(self.fallback))

    def mode_for(self, suite: str, arch: str, mirror: str, cache: Path) -> str:
        """The mode this suite/arch is made in: emulated once chrootless was refused where that may fall back."""
        if self.mode == CHROOTLESS and self.falls_back(suite, arch) and \
                _refused_marker(self.tool, suite, arch, mirror, cache).is_file():
            return EMULATED
        return self.mode


def _refused_marker(tool: str, suite: str, arch: str, mirror: str, cache: Path) -> Path:
    return cache / f"debian-{suite}-{arch}-{debian_key(tool, suite, arch, mirror, CHROOTLESS)[:16]}.refused"


def debian_layer(method: Method, suite: str, arch: str, mirror: str, cache: Path, log) -> RootLayer:
    """Debian `suite` minbase for `arch` as one layer; kept under `cache`, where the next seed finds it.

    A chrootless refusal is the seed's error, or, where local.emulation_fallback allows it, made under
    emulation; a marker (its one line) then keeps later seeds from trying chrootless again. Delete the
    marker to retry."""
    mode = method.mode_for(suite, arch, mirror, cache)
    try:
        return _debian_layer(method.tool, mode, suite, arch, mirror, cache, log)
    except Refused as e:
        if not method.falls_back(suite, arch):
            raise
        say(log, f"seed: {e}: local.emulation_fallback allows it, so it is made under emulation")
        marker = _refused_marker(method.tool, suite, arch, mirror, cache)
        layer = _debian_layer(method.tool, EMULATED, suite, arch, mirror, cache, log)
        marker.write_text(f"{e}\n")
        return layer


def _debian_layer(tool: str, mode: str, suite: str, arch: str, mirror: str, cache: Path, log) -> RootLayer:
    how = " chrootless" if mode == CHROOTLESS else ""
    source = f"Debian {suite} minbase for {arch} by {tool}{how} from {mirror}"
    full_key = debian_key(tool, suite, arch, mirror, mode)
    key = full_key[:16]
    blob_path, meta_path = cache / f"debian-{suite}-{arch}-{key}.tar.gz", cache / f"debian-{suite}-{arch}-{key}.meta"
    if blob_path.is_file() and meta_path.is_file():
        diff_id, epoch = meta_path.read_text().split()
        return RootLayer(blob_path.read_bytes(), diff_id, int(epoch), source, full_key)
    epoch = release_epoch(mirror, suite)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{tool}-{arch}-", dir=cache))
    try:
        start = time.monotonic()
        if mode == CHROOTLESS:
            root = chrootless_tree(suite, arch, mirror, work, epoch, log)
        else:
            bootstrap(tool, suite, arch, mirror, root := work / "root", epoch, log)
        tar = tar_tree(root, epoch)
        log.write(f"seed: {tool}{how} --variant=minbase {suite} {arch}: {time.monotonic() - start:.0f} s\n")
        log.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    layer = RootLayer(gzip_bytes(tar), "sha256:" + hashlib.sha256(tar).hexdigest(), epoch, source, full_key)
    for path, data in ((blob_path, layer.blob), (meta_path, f"{layer.diff_id} {epoch}\n".encode())):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return layer
