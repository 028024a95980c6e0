"""What a published image carries: its SBOM or provenance, read from the registry alone (`invoke sbom`,
`invoke provenance`).

A tag or digest naming an index gives every platform's document, keyed by
platform (`linux/amd64`), or one platform's with `platform`; one naming a
single image's manifest gives that image's document as it was attached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from builder.core.errors import BuilderError
from builder.core.registry import Registry
from builder.image.audit import openvex, provenance, referrers, sbom

KINDS = {"sbom": sbom.MEDIA_TYPE, "provenance": provenance.MEDIA_TYPE, "vex": openvex.MEDIA_TYPE}


class ShowError(BuilderError, ValueError):
    pass


@dataclass(frozen=True)
class Image:
    platform: str
    digest: str


def _platform(p: dict) -> str:
    return "/".join(p[k] for k in ("os", "architecture", "variant") if p.get(k))


def images(registry: Registry, repo: str, ref: str) -> tuple[list[Image], bool]:
    """The per-platform image manifests `ref` names (one, for a manifest), and whether it is an index."""
    got = registry.get_manifest(repo, ref)
    if got is None:
        raise ShowError(f"{registry.host}/{repo}: {ref} not found; check the tag or digest")
    body, _, digest = got
    doc = json.loads(body)
    if "manifests" not in doc:
        config = json.loads(registry.get_blob(repo, doc["config"]["digest"]))
        return [Image(_platform(config), digest)], False
    return [Image(_platform(m.get("platform", {})), m["digest"]) for m in doc["manifests"]
            if m.get("platform", {}).get("os", "unknown") != "unknown"], True


def document(registry: Registry, repo: str, image: Image, kind: str) -> dict:
    found = referrers.latest(registry, repo, image.digest, KINDS[kind])
    if found is None and kind == "vex":
        raise ShowError(unscanned(registry, repo, image))
    if found is None:
        raise ShowError(f"{registry.host}/{repo}@{image.digest} ({image.platform}) carries no {kind} "
                        f"({KINDS[kind]} referrer): it was published before images carried one, or by another tool")
    return json.loads(found)


def unscanned(registry: Registry, repo: str, image: Image) -> str:
    """Why an image carries no VEX, as its provenance recorded it when gosu was not scanned."""
    where = f"{registry.host}/{repo}@{image.digest} ({image.platform}) carries no vex ({KINDS['vex']} referrer)"
    prov = referrers.latest(registry, repo, image.digest, provenance.MEDIA_TYPE)
    why = json.loads(prov).get("predicate", {}).get("buildDefinition", {}).get("internalParameters", {}) \
        .get("vulnScan", "") if prov else ""
    if why:
        return (f"{where}: its gosu was {why}, so the build made no VEX; rebuild it where the database answers, "
                "or with a local copy (--vuln-db, local.vuln_db)")
    return f"{where}: it was published before images carried one, or by another tool"


def show(registry: Registry, repo: str, ref: str, kind: str, platform: str | None = None) -> bytes:
    """The document(s) as JSON text: one image's document, or an object keyed by platform."""
    if kind not in KINDS:
        raise ShowError(f"unknown document {kind!r}: use one of {', '.join(KINDS)}")
    every, index = images(registry, repo, ref)
    found = [i for i in every if not platform or i.platform == platform or i.platform.startswith(platform + "/")]
    if not found:
        raise ShowError(f"{ref} has no {platform} image; it has {', '.join(i.platform for i in every)}")
    if len(found) == 1 and (platform or not index):
        out = document(registry, repo, found[0], kind)
    else:
        out = {i.platform: document(registry, repo, i, kind) for i in found}
    return json.dumps(out, indent=2, sort_keys=True).encode() + b"\n"
