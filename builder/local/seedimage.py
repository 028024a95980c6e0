"""The local registry's bases as images: which releases can be seeded here, and each (base, arch) child.

What each seed is, from where, is described in seed.py, which puts the
children made here into the local registry. A child is made in memory
(manifest, config, blobs) from a recipe: everything it is made from, whose
digest seed.py keeps on the child's descriptor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from builder.core import arches, oci
from builder.core.registry import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, sha256_digest
from builder.image.assembly import accounts, basefs, layer
from builder.image.assembly.append import iso
from builder.local import rootfs
from builder.config.settings import CHROOTLESS, Flavor, ImageSettings, LocalSettings

# Part of every recipe: bump it when a child's content changes for the same inputs, so old children are remade.
FORMAT = "2"
STANDIN = "org.base-gosu.standin"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UBUNTU = accounts.Account("ubuntu", 1000, 1000, "home/ubuntu", "/bin/bash")
# Ubuntu's images carry the user `ubuntu` from this release on (22.04's have none).
UBUNTU_USER_SINCE = (23, 4)
# ubuntu:24.04's own passwd line has the comment `Ubuntu`, which accounts.py (made for the ops user) leaves empty.
UBUNTU_GECOS = "Ubuntu"


@dataclass(frozen=True)
class Seed:
    kind: str                 # alpine, debian (the minideb stand-in) or ubuntu (the ubuntu stand-in)
    name: str                 # repo:tag in the local registry
    flavor: Flavor     # whose base it is (the flavor at one release): its arches, platforms and real base
    extra_tags: tuple[str, ...] = ()
    suite: str = ""           # debian and ubuntu: the Debian suite it is bootstrapped from

    @property
    def ubuntu_user(self) -> bool:
        if self.kind != "ubuntu":
            return False
        try:
            return tuple(int(n) for n in self.flavor.release.split(".")[:2]) >= UBUNTU_USER_SINCE
        except ValueError:
            return True

    @property
    def repo(self) -> str:
        return self.name.rsplit(":", 1)[0]

    @property
    def tags(self) -> list[str]:
        return [self.name.rsplit(":", 1)[1], *self.extra_tags]


KINDS = {"minideb": "debian", "ubuntu": "ubuntu"}   # flavor -> how its stand-in is made


def seed_for(local: LocalSettings, flavor: Flavor) -> Seed | None:
    """The local seed of this release's base or stand-in, or None when it cannot be seeded here."""
    if local.alpine_seed in (flavor.base, flavor.standin):
        return Seed("alpine", local.alpine_seed, flavor, (local.alpine_version,))
    suite = local.standin_suite(flavor.key)
    if flavor.standin and flavor.name in KINDS and suite:
        return Seed(KINDS[flavor.name], flavor.standin, flavor, suite=suite)
    return None


def seedable(local: LocalSettings, flavor: Flavor) -> str:
    """`invoke releases`' "seedable here?" column: from what, or why not."""
    s = seed_for(local, flavor)
    if s is None:
        return "no (" + ("no minirootfs tarballs here" if flavor.name == "alpine" else
                         f"no local.standin_suites entry for {flavor.key}") + ")"
    if s.kind == "alpine":
        return f"yes (minirootfs {local.alpine_version})" if local.alpine_dir.is_dir() else \
            f"no ({local.alpine_dir} is missing)"
    return f"yes (Debian {s.suite})"


def seeds(local: LocalSettings, settings: ImageSettings) -> list[Seed]:
    """The local seeds of every release that can be seeded here (as its base or its stand-in)."""
    out: dict[str, Seed] = {}
    for rels in (settings.releases or {f.name: {f.release: f} for f in settings.flavors.values()}).values():
        for flavor in rels.values():
            s = seed_for(local, flavor)
            if s is not None and s.name not in out:
                out[s.name] = s
    return list(out.values())


def method(local: LocalSettings) -> rootfs.Method:
    return rootfs.Method(local.debian_bootstrap, local.debian_mode, local.emulation_fallback)


def _rootfs_cache(local: LocalSettings):
    return local.state_dir / "rootfs"


def debian_mode(local: LocalSettings, seed: Seed, arch: str) -> str:
    """The mode the Debian tree of this child is made in (emulated once chrootless was refused, where allowed)."""
    return method(local).mode_for(local.suite_for(seed.suite, arch), arch, local.debian_mirror, _rootfs_cache(local))


def describe(local: LocalSettings, seed: Seed, arch: str) -> str:
    """What the child for `arch` is made from, in a few words."""
    if seed.kind == "alpine":
        return rootfs.alpine_name(local.alpine_version, arch)
    extra = " plus user ubuntu 1000:1000" if seed.ubuntu_user else ""
    how = " chrootless" if debian_mode(local, seed, arch) == CHROOTLESS else ""
    return f"{local.debian_bootstrap}{how} (Debian {local.suite_for(seed.suite, arch)} minbase{extra}, {arch})"


def recipe(local: LocalSettings, seed: Seed, arch: str, platform: arches.Platform, debian_key: str = "") -> str:
    """Everything a child is made from; raises NotSeedable (tarball absent) or SetupError (tarball tampered).
    `debian_key`: the key of the Debian layer it was made from (default: the one it would be made from now)."""
    doc = {"format": FORMAT, "kind": seed.kind, "platform": str(platform)}
    if seed.kind == "alpine":
        name = rootfs.alpine_name(local.alpine_version, arch)
        doc["tarball"] = [name, rootfs.alpine_tarball(local.alpine_dir, local.alpine_version, arch)[1]]
    else:
        doc["debian"] = debian_key or rootfs.debian_key(local.debian_bootstrap, local.suite_for(seed.suite, arch),
                                                        arch, local.debian_mirror, debian_mode(local, seed, arch))
        if seed.ubuntu_user:
            doc["account"] = [dataclasses.astuple(UBUNTU), UBUNTU_GECOS]
    return sha256_digest(oci.canonical(doc))


def _ubuntu_layer(debian: rootfs.RootLayer) -> layer.Layer:
    fs = basefs.merge([basefs.subset(debian.blob)])
    _, entries = accounts.add(fs, UBUNTU, debian.epoch)
    plain = f"{UBUNTU.user}:x:{UBUNTU.uid}:{UBUNTU.gid}::/{UBUNTU.home}:{UBUNTU.shell}\n"
    fixed = plain.replace("::", f":{UBUNTU_GECOS}:", 1)
    entries = [dataclasses.replace(e, data=e.data.replace(plain.encode(), fixed.encode()))
               if e.path == "etc/passwd" else e for e in entries]
    return layer.make(entries, debian.epoch)


@dataclass(frozen=True)
class Child:
    manifest: bytes
    config: bytes
    blobs: tuple[bytes, ...]
    recipe: str   # what it was made from: a chrootless refusal may have made it emulated


def make_child(local: LocalSettings, seed: Seed, arch: str, platform: arches.Platform, log) -> Child:
    if seed.kind == "alpine":
        root = rootfs.alpine_layer(local.alpine_dir, local.alpine_version, arch)
        layers, labels, cmd = [(root.blob, root.diff_id, root.source)], {}, ["/bin/sh"]
    else:
        suite = local.suite_for(seed.suite, arch)
        root = rootfs.debian_layer(method(local), suite, arch, local.debian_mirror, _rootfs_cache(local), log)
        layers, cmd = [(root.blob, root.diff_id, root.source)], ["/bin/sh"]
        what = f"Debian {suite} minbase"
        if seed.ubuntu_user:
            extra = _ubuntu_layer(root)
            layers.append((extra.blob, extra.diff_id, "user and group ubuntu 1000:1000, as useradd writes them"))
            what = f"{what} plus user ubuntu 1000:1000"
        if seed.kind == "ubuntu":
            cmd = ["/bin/bash"]
        labels = {STANDIN: f"{what}, a stand-in for {seed.flavor.base} {arch}"}
    created = iso(root.epoch)
    config = oci.canonical({
        **platform.as_oci(), "created": created,
        "config": {"Env": [PATH_ENV], "Cmd": cmd, **({"Labels": labels} if labels else {})},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]},
        "history": [{"created": created, "created_by": f"base-gosu seed: {why}"} for _, _, why in layers],
    })
    manifest = oci.canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(b), "size": len(b)} for b, _, _ in layers],
    })
    return Child(manifest, config, tuple(b for b, _, _ in layers), recipe(local, seed, arch, platform, root.key))
