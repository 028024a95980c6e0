"""A flavor's base for one arch, resolved to its platform manifest's digest (read from a registry).

Resolution happens once per image, while the run is planned; assembly is
handed the resolved Base and never looks a tag up again.
"""

from __future__ import annotations

import json

from builder.image.model import Base
from builder.config.settings import Flavor, ImageSettings
from builder.core import arches
from builder.core.arches import Arch
from builder.core.refs import split_ref
from builder.core.clients import Clients
from builder.core.registry import RegistryError


def resolve_base(settings: ImageSettings, flavor: Flavor, arch: Arch, clients: Clients, read: dict | None = None
                 ) -> Base:
    """The flavor's base for this arch, pinned by digest: the first candidate that resolves.

    `read`: the indexes this run already read, by reference; a flavor's arches share one, so a run reads
    each base's index once however many arches it builds.
    """
    tried = []
    read = {} if read is None else read
    for ref, standin in settings.base_candidates(flavor):
        host, repo, tag = split_ref(ref)
        reference = (flavor.digest if not standin else "") or tag
        if (ref, reference) not in read:
            try:
                read[ref, reference] = clients.probe(host).get_manifest(repo, reference)
            except RegistryError as e:
                read[ref, reference] = e
        got = read[ref, reference]
        if isinstance(got, RegistryError):
            tried.append(f"{ref}: {got}")
            continue
        if got is None:
            tried.append(f"{ref}: not found in {host}")
            continue
        return _platform_base(ref, got, flavor.platform_of(arch), flavor.base if standin else "")
    raise ValueError(f"cannot resolve a base for {flavor.name} {arch.dpkg}: " + "; ".join(tried) +
                     ". Offline? Run `invoke up` to seed the local registry (images.base_mirror)")


def _platform_base(ref: str, got: tuple[bytes, str, str], want: arches.Platform, standin_for: str) -> Base:
    body, media_type, digest = got
    doc = json.loads(body)
    repo_ref = ref.rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref
    if "manifests" not in doc:
        return Base(ref, repo_ref, digest, digest, standin_for)
    # arm/v6 and arm/v7 are different images of one base (alpine publishes both): the variant must match,
    # except that arm64's v8 is often left unsaid.
    for m in doc["manifests"]:
        p = m.get("platform", {})
        variant = p.get("variant") or ("v8" if p.get("architecture") == "arm64" else None)
        if (p.get("os"), p.get("architecture"), variant) == (want.os, want.architecture, want.variant):
            return Base(ref, repo_ref, digest, m["digest"], standin_for)
    raise MissingPlatform(ref, want)


class MissingPlatform(ValueError):
    """The base has no image for the platform: seeding (locally) or another base (elsewhere) can fix it."""
    def __init__(self, ref: str, platform: arches.Platform):
        super().__init__(f"base {ref} has no {platform} image")
        self.ref, self.platform = ref, platform
