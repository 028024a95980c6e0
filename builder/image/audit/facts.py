"""What the SBOM and the provenance say about one assembled image, gathered once from the image itself.

gosu's build information and the entrypoint's digest are read from the
layer the build wrote (the bytes that ship, not the cache they came from);
the OS packages from every layer's package database.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass

from builder.image.assembly import append
from builder.gosu.sources.model import Fetched
from builder.image.audit import basepkgs, goinfo
from builder.image.audit.packages import Distro, Package
from builder.image.nsswrapper import NssWrapper

LABEL = "org.base-gosu"
GOSU_PATH = "usr/local/bin/gosu"


@dataclass(frozen=True)
class Facts:
    manifest_digest: str
    title: str
    platform: dict
    flavor: str
    epoch: int
    revision: str
    source_url: str
    base_name: str
    base_digest: str
    base_platform_digest: str
    standin_for: str
    trial: str
    gosu: Fetched
    go: goinfo.BuildInfo | None
    rebuilt: tuple[dict, ...]
    entrypoint: tuple[tuple[str, str, str], ...]   # (path in the image, its source in images/, sha256), core first
    distro: Distro
    packages: tuple[Package, ...]
    package_db: str
    labels: dict
    nss_wrapper: NssWrapper | None = None   # as the plan names it, checked against the layer's bytes
    unscanned: str = ""     # why gosu was not scanned on the run that built it ("" when it was)


def layer_files(tar: bytes, *paths: str) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for ti in t:
            if ti.name.strip("/") in paths and ti.isreg():
                out[ti.name.strip("/")] = t.extractfile(ti).read()
    return out


def entrypoint_files(tar: bytes) -> tuple[tuple[str, str, str], ...]:
    """The entrypoint and each file it sources as the layer holds them: (path, source in images/, sha256)."""
    lib = append.ENTRYPOINT_LIB.strip("/") + "/"
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for ti in t:
            name = ti.name.strip("/")
            source = "entrypoint.sh" if name == append.ENTRYPOINT.strip("/") else name.removeprefix(lib)
            if ti.isreg() and (source == "entrypoint.sh" or (name.startswith(lib + "entrypoint-")
                                                              and name.endswith(".sh"))):
                out.append((name, f"images/{source}", hashlib.sha256(t.extractfile(ti).read()).hexdigest()))
    return tuple(sorted(out, key=lambda f: (f[1] != "images/entrypoint.sh", f[0])))


def go_info(binary: bytes) -> goinfo.BuildInfo | None:
    try:
        return goinfo.parse(binary, "gosu")
    except goinfo.GoInfoError:
        return None


def gather(built, registry_for, host_arch: str = "") -> Facts:
    """Facts of a make.Built; `registry_for(host)` gives the client its base layers are read through."""
    image, labels = built.image, built.labels
    nss, nss_path = built.plan.nss_wrapper, append.NSS_WRAPPER.strip("/")
    tar = append.own_layer_tar(built.store, image)
    own = layer_files(tar, GOSU_PATH, nss_path)
    gosu_bin = own[GOSU_PATH]
    if hashlib.sha256(gosu_bin).hexdigest() != built.fetched.sha256:
        raise ValueError(f"{built.tag}: the gosu in its layer is not the verified one ({built.fetched.sha256[:12]})")
    if (hashlib.sha256(own[nss_path]).hexdigest() if nss_path in own else None) != (nss.sha256 if nss else None):
        raise ValueError(f"{built.tag}: the nss_wrapper in its layer is not the one its plan names "
                         f"({nss.sha256[:12] if nss else 'none'})")
    fs = basepkgs.read(built.store, registry_for(image.base.host), image.base.repo, image.layers)
    distro, pkgs, db = basepkgs.installed(fs)
    rebuilt = ()
    if built.fetched.kind == "rebuild":
        from builder.gosu.sources import rebuild
        rebuilt = tuple(rebuild.components(built.fetched, host_arch))
    return Facts(
        manifest_digest=image.digest, title=labels.get("org.opencontainers.image.title", built.tag),
        platform=image.platform, flavor=labels.get(f"{LABEL}.flavor", ""),
        epoch=int(labels.get(f"{LABEL}.source-date-epoch", "0")),
        revision=labels.get("org.opencontainers.image.revision", ""),
        source_url=labels.get("org.opencontainers.image.source", ""),
        base_name=labels.get("org.opencontainers.image.base.name", ""),
        base_digest=labels.get("org.opencontainers.image.base.digest", ""),
        base_platform_digest=labels.get(f"{LABEL}.base.platform-digest", ""),
        standin_for=labels.get(f"{LABEL}.base.standin-for", ""), trial=built.trial,
        gosu=built.fetched, go=go_info(gosu_bin), rebuilt=rebuilt,
        entrypoint=entrypoint_files(tar),
        distro=distro, packages=tuple(pkgs), package_db=db, labels=dict(labels), nss_wrapper=nss,
        unscanned=built.plan.unscanned)
