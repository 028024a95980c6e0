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

The children themselves are made by seedimage.py; this module puts them into the
local registry.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from builder.core import arches, filelock, oci
from builder.image import bases, model
from builder.local import bootstrap, rootfs
from builder.local.seedimage import Child, Seed, describe, make_child, recipe, seed_for, seedable, seeds
from builder.core.host import SetupError, say
from builder.config.settings import ImageSettings, LocalSettings
from builder.core.clients import Clients
from builder.core.registry import OCI_INDEX, OCI_MANIFEST, Registry, RegistryError, sha256_digest

RECIPE = "org.base-gosu.seed.recipe"


def _key(platform: dict) -> str:
    return json.dumps(platform, sort_keys=True)


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
              mount_from: tuple[str, ...] = (), clients: Clients | None = None) -> Outcome:
    """Make sure `seed` has a child for each arch; only missing or changed children are made.

    Every recipe is worked out (Alpine tarballs checked) before anything is
    pushed, so a tampered tarball leaves the registry as it was. The index is
    rewritten after each new child, so an interrupted run keeps what it finished.
    One process at a time seeds a given index: two runs at once (two engineers,
    two test lanes) would each rewrite it from what they read, and the later
    would drop the other's new children. The second waits, then finds them made.
    """
    ref = f"{local.registry}/{seed.name}"
    with filelock.held(filelock.path_for(local.state_dir, ref), log,
                       f"seed: {ref}: another run is seeding it; waiting for it to finish"):
        return _seed_base(local, seed, arch_names, log, mount_from, clients)


def _seed_base(local: LocalSettings, seed: Seed, arch_names: list[str], log, mount_from: tuple[str, ...],
               clients: Clients | None) -> Outcome:
    registry, out = (clients or Clients())(local.registry), Outcome()
    if seed.kind != "alpine":
        # A Debian child's recipe names the versions of the tools that make it. Read before they are installed,
        # a bare machine's first seed would be named after tools it did not have, and the next run, reading the
        # versions it has, would make every child again.
        bootstrap.install_tools(local.debian_bootstrap, log, local.debian_mode)
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
    if todo and seed.kind != "alpine":
        bootstrap.prepare(local.debian_bootstrap, [arch for arch, _, _ in todo], log, local.debian_mode)
    # Children are made local.seed_jobs at a time (a foreign arch's bootstrap is one qemu process), and pushed
    # one at a time as each is made, so the index is rewritten by one thread only.
    with ThreadPoolExecutor(max_workers=max(1, min(local.seed_jobs, len(todo)))) as pool:
        started = time.monotonic()
        making = {pool.submit(make_child, local, seed, arch, platform, log): (arch, platform)
                  for arch, platform, _ in todo}
        try:
            for done in as_completed(making):
                arch, platform = making[done]
                child = done.result()
                children[_key(platform.as_oci())] = _push_child(registry, seed, child, platform, child.recipe,
                                                                 mount_from)
                digest = _write_index(registry, seed, list(children.values()))
                out.seeded.append(arch)
                say(log, f"seed: {local.registry}/{seed.name}: added {platform} from {describe(local, seed, arch)} "
                         f"({time.monotonic() - started:.1f} s since the seed began); index {digest[:19]}")
        except BaseException:
            # What is made and pushed stays; what has not started does not start.
            for f in making:
                f.cancel()
            raise
    out.seeded.sort(key=[arch for arch, _, _ in todo].index)
    return out


def _report(local: LocalSettings, seed: Seed, out: Outcome, log) -> None:
    if out.already and not out.seeded:
        say(log, f"seed: {local.registry}/{seed.name} already seeded for {', '.join(out.already)}; nothing to do")
    for line in out.unseedable:
        say(log, f"seed: {line}")


def seed(local: LocalSettings, settings: ImageSettings, log, arch_names: list[str] | None = None,
         clients: Clients | None = None) -> None:
    """What `invoke up` seeds: each default release's seed, for `arch_names` (default local.arches) it lists.
    Other releases are seeded when a build asks for them (ensure_bases), so `up` costs what it did.

    An Alpine arch without a tarball here is reported and skipped; the others are seeded.
    """
    all_seeds = seeds(local, settings)
    repos = tuple(s.repo for s in all_seeds)
    defaults = [s for s in (seed_for(local, f) for f in settings.flavors.values()) if s is not None]
    for s in defaults:
        wanted = [a for a in (arch_names or local.arches) if a in s.flavor.arches]
        out = seed_base(local, s, wanted, log, tuple(r for r in repos if r != s.repo), clients)
        _report(local, s, out, log)


def _seed_for(local: LocalSettings, settings: ImageSettings, target: model.Target,
              by_ref: dict[str, Seed], read: dict, clients: Clients) -> Seed | None:
    """The local seed this target's base should come from, when it lacks the target's platform; else None."""
    try:
        bases.resolve_base(settings, target.flavor, target.arch, clients, read)
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


def ensure_bases(local: LocalSettings, settings: ImageSettings, targets, log, read: dict | None = None,
                 clients: Clients | None = None) -> list[str]:
    """Seed every local base the targets need and the local registry lacks; returns the (seed, arch) seeded.

    Only when bases come through the local registry (images.base_mirror is
    it); a base that is missing anywhere else is the build's error to report.
    `read`: the base indexes the run reads (bases.resolve_base), shared with its plan so that a base is
    read once; emptied when a base was seeded, since its index changed.
    """
    read, clients = {} if read is None else read, clients or Clients()
    if settings.base_mirror.rstrip("/") not in {local.registry, f"localhost:{local.registry_port}"}:
        return []
    all_seeds = seeds(local, settings)
    by_ref = {f"{settings.base_mirror.rstrip('/')}/{s.name}": s for s in all_seeds}
    wanted: dict[str, list[str]] = {}
    for t in targets:
        s = _seed_for(local, settings, t, by_ref, read, clients)
        if s is not None and t.arch.dpkg not in wanted.setdefault(s.name, []):
            say(log, f"seed: {local.registry}/{s.name} has no {t.platform} image; seeding it from "
                     f"{describe(local, s, t.arch.dpkg)}")
            wanted[s.name].append(t.arch.dpkg)
    done, unseedable = [], []
    for s in all_seeds:
        if wanted.get(s.name):
            out = seed_base(local, s, wanted[s.name], log, tuple(o.repo for o in all_seeds if o is not s), clients)
            done += [f"{s.name} {a}" for a in out.seeded]
            unseedable += out.unseedable
    if done:
        read.clear()
    if unseedable:
        raise SetupError("; ".join(unseedable))
    return done
