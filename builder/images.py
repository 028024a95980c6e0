"""The build stage: a verified gosu + the entrypoint on a digest-pinned base, per flavor and arch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import arches
from .arches import Arch
from .engine import Engine
from .fetch import Fetched
from .registry import Registry, RegistryError, credentials_for

IMAGES = Path(__file__).resolve().parent.parent / "images"
LABEL = "org.base-gosu"


@dataclass(frozen=True)
class Flavor:
    name: str
    base: str          # the real upstream reference, e.g. ubuntu:24.04
    standin: str       # what the local registry holds instead, if not the real thing
    digest: str        # optional pin of the base's index digest
    release: str       # base release, used in tags (alpine-3.20)
    arches: tuple[str, ...]


@dataclass(frozen=True)
class ImageSettings:
    repository: str
    flavors: dict[str, Flavor]
    base_mirror: str
    use_standins: bool
    ops_user: str
    ops_uid: int
    ops_gid: int
    source_url: str

    def base_ref(self, flavor: Flavor) -> str:
        name = flavor.standin if self.use_standins and flavor.standin else flavor.base
        return f"{self.base_mirror.rstrip('/')}/{name}" if self.base_mirror else name

    def tag(self, flavor: str, arch: str) -> str:
        return f"{self.repository}:{flavor}-{arch}"


@dataclass(frozen=True)
class Target:
    flavor: Flavor
    arch: Arch

    @property
    def name(self) -> str:
        return f"{self.flavor.name}-{self.arch.dpkg}"


@dataclass(frozen=True)
class Base:
    ref: str              # as configured (tag form)
    repo_ref: str         # registry/repo, what FROM uses with the digest
    index_digest: str     # what the tag pointed at
    digest: str           # the platform's own manifest digest (FROM ...@digest)


@dataclass(frozen=True)
class Built:
    target: Target
    tag: str
    image_id: str
    gosu: Fetched
    base: Base
    inputs: str
    labels: dict


def plan(settings: ImageSettings, flavor_spec: str | None, arch_spec: str | None, default_arch: str) -> list[Target]:
    """Validate the whole request before anything is built."""
    names = [f.strip() for f in (flavor_spec.split(",") if flavor_spec else settings.flavors) if f.strip()]
    unknown = [n for n in names if n not in settings.flavors]
    if unknown or not names:
        raise ValueError(f"unknown flavor {', '.join(unknown) or repr(flavor_spec)}: use one of {', '.join(settings.flavors)}")
    wanted = arches.parse_list(arch_spec, (default_arch,))
    targets = []
    for n in names:
        flavor = settings.flavors[n]
        for a in wanted:
            if a.dpkg not in flavor.arches:
                raise ValueError(f"flavor {n} has no {a.dpkg} image: its base {flavor.base} exists only for "
                                 f"{', '.join(flavor.arches)}")
            targets.append(Target(flavor, a))
    return targets


def split_ref(ref: str) -> tuple[str, str, str]:
    """'alpine:3.20' -> (registry-1.docker.io, library/alpine, 3.20); 'h:5000/x/y:t' -> (h:5000, x/y, t)."""
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return "registry-1.docker.io", name if "/" in name else f"library/{name}", tag


def resolve_base(settings: ImageSettings, flavor: Flavor, arch: Arch) -> Base:
    ref = settings.base_ref(flavor)
    host, repo, tag = split_ref(ref)
    reg = Registry(host, credentials_for(host))
    try:
        got = reg.get_manifest(repo, flavor.digest or tag)
    except RegistryError as e:
        raise ValueError(f"cannot resolve base {ref} for {arch.dpkg}: {e}. Offline? Run `invoke up` and use the "
                         "local registry (images.base_mirror)") from None
    if got is None:
        raise ValueError(f"base {ref} not found in {host}; run `invoke up` to seed the local registry")
    body, media_type, digest = got
    doc = json.loads(body)
    repo_ref = ref.rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref
    if "manifests" not in doc:
        return Base(ref, repo_ref, digest, digest)
    for m in doc["manifests"]:
        p = m.get("platform", {})
        if p.get("os") == "linux" and any(p.get("architecture") == pl.architecture and
                                          (not pl.variant or p.get("variant") in (None, pl.variant))
                                          for pl in arch.platforms):
            return Base(ref, repo_ref, digest, m["digest"])
    raise ValueError(f"base {ref} has no {arch.platform} image; flavor {flavor.name} cannot be built for {arch.dpkg}")


def git_revision(root: Path) -> tuple[str, str]:
    """(commit, commit time): labels that are stable for a given checkout."""
    def git(*args):
        p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else ""
    return git("rev-parse", "HEAD") or "unknown", git("log", "-1", "--format=%cI") or "1970-01-01T00:00:00Z"


def inputs_digest(settings: ImageSettings, target: Target, base: Base, gosu: Fetched) -> str:
    """Everything that determines the image's content; equal digests mean nothing to push."""
    doc = {
        "base": base.digest, "gosu": gosu.sha256, "flavor": target.flavor.name, "arch": target.arch.dpkg,
        "dockerfile": hashlib.sha256((IMAGES / "Dockerfile").read_bytes()).hexdigest(),
        "entrypoint": hashlib.sha256((IMAGES / "entrypoint.sh").read_bytes()).hexdigest(),
        "user": [settings.ops_user, settings.ops_uid, settings.ops_gid],
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def build(engine: Engine, settings: ImageSettings, target: Target, gosu: Fetched, git_rev: tuple[str, str],
          no_cache: bool = False) -> Built:
    """`git_rev` is git_revision() of the checkout: (commit, commit time)."""
    base = resolve_base(settings, target.flavor, target.arch)
    revision, created = git_rev
    inputs = inputs_digest(settings, target, base, gosu)
    labels = {
        "org.opencontainers.image.source": settings.source_url,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": f"{settings.repository}:{target.flavor.name}",
        "org.opencontainers.image.base.name": base.ref,
        "org.opencontainers.image.base.digest": base.index_digest,
        f"{LABEL}.base.platform-digest": base.digest,
        f"{LABEL}.gosu.version": gosu.version,
        f"{LABEL}.gosu.sha256": gosu.sha256,
        f"{LABEL}.flavor": target.flavor.name,
        f"{LABEL}.inputs": inputs,
    }
    tag = settings.tag(target.flavor.name, target.arch.dpkg)
    with tempfile.TemporaryDirectory(prefix="build-") as ctx:
        shutil.copyfile(gosu.path, Path(ctx) / "gosu")
        shutil.copyfile(IMAGES / "entrypoint.sh", Path(ctx) / "entrypoint.sh")
        engine.build(Path(ctx), tag, str(target.arch.platform), dockerfile=IMAGES / "Dockerfile",
                     build_args={"BASE_IMAGE": f"{base.repo_ref}@{base.digest}", "GOSU_SHA256": gosu.sha256,
                                 "OPS_USER": settings.ops_user, "OPS_UID": str(settings.ops_uid),
                                 "OPS_GID": str(settings.ops_gid)},
                     labels=labels, no_cache=no_cache)
    info = engine.inspect(tag)
    return Built(target, tag, info["Id"], gosu, base, inputs, labels)

