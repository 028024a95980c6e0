"""Seeding the local registry's bases, one (base, arch) at a time, without an engine.

The bases in the local registry, one per release that can be had here:

* alpine:3.20 (`local.alpine_seed`, and 3.20.3): the real Alpine, each arch's
  official minirootfs tarball pushed as its only layer, byte for byte, once
  its sha512 matches the release's checksums.sha512. An arch whose tarball
  is not on this machine, and every other Alpine release, is "not seedable
  here"; it stays configured for production.
* each minideb release's stand-in (its `standin`): Debian minbase of the suite
  `local.standin_suites` names (per-arch overrides in `local.debian_suites`)
  bootstrapped by `local.debian_bootstrap`.
* each ubuntu release's stand-in: Debian minbase of the suite of the same era
  (`local.standin_suites`), plus, for 23.04 and later, a second layer adding
  the user and group `ubuntu` at 1000:1000 the real images have since 23.04
  (its passwd line is the real image's), written as shadow-utils' useradd
  would write it, by builder/image/assembly/accounts.py. Nothing runs in the
  image, so no emulator is needed beyond the Debian bootstrap itself.
  bullseye and bookworm have no riscv64: that child is trixie, and its label
  says so.

Each child of a seed index carries its own recipe (an annotation on its
descriptor): seeding an arch whose child has the same recipe does nothing,
seeding one more arch adds one child and leaves the others' descriptors
byte-identical. The index itself changes, so its digest does: images record
the base index digest in org.opencontainers.image.base.digest, and an image
built before an arch was added names the older index. That is expected for
local stand-ins, whose index is a convenience of this machine.

Building or publishing for an arch the local registry lacks seeds it first
(`ensure_bases`); nothing is ever seeded into a registry other than the local one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from builder.core import arches, oci
from builder.image import bases, model
from builder.local import rootfs
from builder.image.assembly import accounts, basefs, layer
from builder.image.assembly.append import iso
from builder.core.host import SetupError, say
from builder.local.setup import LocalSettings
from builder.core.registry import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Registry, RegistryError, sha256_digest)

# Part of every recipe: bump it when a child's content changes for the same inputs, so old children are remade.
FORMAT = "2"
RECIPE = "org.base-gosu.seed.recipe"
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
    flavor: model.Flavor     # whose base it is (the flavor at one release): its arches, platforms and real base
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


def seed_for(local: LocalSettings, flavor: model.Flavor) -> Seed | None:
    """The local seed of this release's base or stand-in, or None when it cannot be seeded here."""
    if local.alpine_seed in (flavor.base, flavor.standin):
        return Seed("alpine", local.alpine_seed, flavor, (local.alpine_version,))
    suite = local.standin_suite(flavor.key)
    if flavor.standin and flavor.name in KINDS and suite:
        return Seed(KINDS[flavor.name], flavor.standin, flavor, suite=suite)
    return None


def seedable(local: LocalSettings, flavor: model.Flavor) -> str:
    """`invoke releases`' "seedable here?" column: from what, or why not."""
    s = seed_for(local, flavor)
    if s is None:
        return "no (" + ("no minirootfs tarballs here" if flavor.name == "alpine" else
                         f"no local.standin_suites entry for {flavor.key}") + ")"
    if s.kind == "alpine":
        return f"yes (minirootfs {local.alpine_version})" if local.alpine_dir.is_dir() else \
            f"no ({local.alpine_dir} is missing)"
    return f"yes (Debian {s.suite})"


def seeds(local: LocalSettings, settings: model.ImageSettings) -> list[Seed]:
    """The local seeds of every release that can be seeded here (as its base or its stand-in)."""
    out: dict[str, Seed] = {}
    for rels in (settings.releases or {f.name: {f.release: f} for f in settings.flavors.values()}).values():
        for flavor in rels.values():
            s = seed_for(local, flavor)
            if s is not None and s.name not in out:
                out[s.name] = s
    return list(out.values())


def _key(platform: dict) -> str:
    return json.dumps(platform, sort_keys=True)


def describe(local: LocalSettings, seed: Seed, arch: str) -> str:
    """What the child for `arch` is made from, in a few words."""
    if seed.kind == "alpine":
        return rootfs.alpine_name(local.alpine_version, arch)
    extra = " plus user ubuntu 1000:1000" if seed.ubuntu_user else ""
    return f"{local.debian_bootstrap} (Debian {local.suite_for(seed.suite, arch)} minbase{extra}, {arch})"


def recipe(local: LocalSettings, seed: Seed, arch: str, platform: arches.Platform) -> str:
    """Everything a child is made from; raises NotSeedable (tarball absent) or SetupError (tarball tampered)."""
    doc = {"format": FORMAT, "kind": seed.kind, "platform": str(platform)}
    if seed.kind == "alpine":
        name = rootfs.alpine_name(local.alpine_version, arch)
        doc["tarball"] = [name, rootfs.alpine_tarball(local.alpine_dir, local.alpine_version, arch)[1]]
    else:
        doc["debian"] = rootfs.debian_key(local.debian_bootstrap, local.suite_for(seed.suite, arch), arch,
                                          local.debian_mirror)
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


def make_child(local: LocalSettings, seed: Seed, arch: str, platform: arches.Platform, log) -> Child:
    if seed.kind == "alpine":
        root = rootfs.alpine_layer(local.alpine_dir, local.alpine_version, arch)
        layers, labels, cmd = [(root.blob, root.diff_id, root.source)], {}, ["/bin/sh"]
    else:
        suite = local.suite_for(seed.suite, arch)
        root = rootfs.debian_layer(local.debian_bootstrap, suite, arch, local.debian_mirror,
                                   local.state_dir / "rootfs", log)
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
    return Child(manifest, config, tuple(b for b, _, _ in layers))


def _current(registry: Registry, seed: Seed) -> list[dict]:
    """The seed index's child descriptors as they are now ([] when there is none yet)."""
    try:
        got = oci.read_index(registry, seed.repo, seed.tags[0])
    except RegistryError as e:
        raise SetupError(f"cannot read {registry.host}/{seed.name}: {e}; is the local registry up (`invoke up`)?") \
            from None
    return list(got[0].get("manifests", [])) if got else []


def _push_child(registry: Registry, seed: Seed, child: Child, platform: arches.Platform, recipe_digest: str,
                mount_from: tuple[str, ...]) -> dict:
    for blob in child.blobs:
        registry.upload_blob(seed.repo, blob, mount_from=mount_from)
    registry.upload_blob(seed.repo, child.config)
    digest = registry.put_manifest(seed.repo, sha256_digest(child.manifest), child.manifest, OCI_MANIFEST)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(child.manifest),
            "platform": platform.as_oci(), "annotations": {RECIPE: recipe_digest}}


def _write_index(registry: Registry, seed: Seed, children: list[dict]) -> str:
    body = oci.canonical({"schemaVersion": 2, "mediaType": OCI_INDEX,
                          "manifests": sorted(children, key=lambda d: _key(d.get("platform", {})))})
    digest = registry.put_manifest(seed.repo, sha256_digest(body), body, OCI_INDEX)
    for tag in seed.tags:
        registry.put_manifest(seed.repo, tag, body, OCI_INDEX)
    return digest


@dataclass
class Outcome:
    seeded: list[str] = dataclasses.field(default_factory=list)
    already: list[str] = dataclasses.field(default_factory=list)
    unseedable: list[str] = dataclasses.field(default_factory=list)   # one message each


def seed_base(local: LocalSettings, seed: Seed, arch_names: list[str], log,
              mount_from: tuple[str, ...] = ()) -> Outcome:
    """Make sure `seed` has a child for each arch; only missing or changed children are made.

    Every recipe is worked out (Alpine tarballs checked) before anything is
    pushed, so a tampered tarball leaves the registry as it was. The index is
    rewritten after each new child, so an interrupted run keeps what it finished.
    """
    registry, out = Registry(local.registry), Outcome()
    children = {_key(d.get("platform", {})): d for d in _current(registry, seed)}
    todo = []
    for arch in arch_names:
        platform = seed.flavor.platform_of(arches.get(arch, arches.IMAGE_ARCHES))
        try:
            want = recipe(local, seed, arch, platform)
        except rootfs.NotSeedable as e:
            out.unseedable.append(f"{local.registry}/{seed.name} {platform}: {e}")
            continue
        have = children.get(_key(platform.as_oci()), {})
        if have.get("annotations", {}).get(RECIPE) == want:
            out.already.append(arch)
        else:
            todo.append((arch, platform, want))
    for arch, platform, want in todo:
        start = time.monotonic()
        child = make_child(local, seed, arch, platform, log)
        children[_key(platform.as_oci())] = _push_child(registry, seed, child, platform, want, mount_from)
        digest = _write_index(registry, seed, list(children.values()))
        out.seeded.append(arch)
        say(log, f"seed: {local.registry}/{seed.name}: added {platform} from {describe(local, seed, arch)} "
                 f"({time.monotonic() - start:.1f} s); index {digest[:19]}")
    return out


def _report(local: LocalSettings, seed: Seed, out: Outcome, log) -> None:
    if out.already and not out.seeded:
        say(log, f"seed: {local.registry}/{seed.name} already seeded for {', '.join(out.already)}; nothing to do")
    for line in out.unseedable:
        say(log, f"seed: {line}")


def seed(local: LocalSettings, settings: model.ImageSettings, log, arch_names: list[str] | None = None) -> None:
    """What `invoke up` seeds: each default release's seed, for `arch_names` (default local.arches) it lists.
    Other releases are seeded when a build asks for them (ensure_bases), so `up` costs what it did.

    An Alpine arch without a tarball here is reported and skipped; the others are seeded.
    """
    all_seeds = seeds(local, settings)
    repos = tuple(s.repo for s in all_seeds)
    defaults = [s for s in (seed_for(local, f) for f in settings.flavors.values()) if s is not None]
    for s in defaults:
        wanted = [a for a in (arch_names or local.arches) if a in s.flavor.arches]
        out = seed_base(local, s, wanted, log, tuple(r for r in repos if r != s.repo))
        _report(local, s, out, log)


def _seed_for(local: LocalSettings, settings: model.ImageSettings, target: model.Target,
              by_ref: dict[str, Seed], read: dict) -> Seed | None:
    """The local seed this target's base should come from, when it lacks the target's platform; else None."""
    try:
        bases.resolve_base(settings, target.flavor, target.arch, read)
        return None
    except bases.MissingPlatform as e:
        return by_ref.get(e.ref)
    except ValueError:  # nothing resolves: the first local seed among the candidates is the one to make
        found = next((by_ref[ref] for ref, _ in settings.base_candidates(target.flavor) if ref in by_ref), None)
        if found is None and seed_for(local, target.flavor) is None:
            raise SetupError(f"{target.flavor.name} {target.flavor.release} ({target.flavor.base}) is not seedable "
                             f"here ({seedable(local, target.flavor).removeprefix('no (').removesuffix(')')}); it stays configured for production, where its "
                             "base can be pulled (`invoke releases` shows what can be built here)") from None
        return found


def ensure_bases(local: LocalSettings, settings: model.ImageSettings, targets, log, read: dict | None = None
                 ) -> list[str]:
    """Seed every local base the targets need and the local registry lacks; returns the (seed, arch) seeded.

    Only when bases come through the local registry (images.base_mirror is
    it); a base that is missing anywhere else is the build's error to report.
    `read`: the base indexes the run reads (bases.resolve_base), shared with its plan so that a base is
    read once; emptied when a base was seeded, since its index changed.
    """
    read = {} if read is None else read
    if settings.base_mirror.rstrip("/") not in {local.registry, f"localhost:{local.registry_port}"}:
        return []
    all_seeds = seeds(local, settings)
    by_ref = {f"{settings.base_mirror.rstrip('/')}/{s.name}": s for s in all_seeds}
    wanted: dict[str, list[str]] = {}
    for t in targets:
        s = _seed_for(local, settings, t, by_ref, read)
        if s is not None and t.arch.dpkg not in wanted.setdefault(s.name, []):
            say(log, f"seed: {local.registry}/{s.name} has no {t.platform} image; seeding it from "
                     f"{describe(local, s, t.arch.dpkg)}")
            wanted[s.name].append(t.arch.dpkg)
    done, unseedable = [], []
    for s in all_seeds:
        if wanted.get(s.name):
            out = seed_base(local, s, wanted[s.name], log, tuple(o.repo for o in all_seeds if o is not s))
            done += [f"{s.name} {a}" for a in out.seeded]
            unseedable += out.unseedable
    if done:
        read.clear()
    if unseedable:
        raise SetupError("; ".join(unseedable))
    return done
