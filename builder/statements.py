"""The documents attested to each per-arch manifest: its SBOM (CycloneDX) and provenance (SLSA v1).

PLACEHOLDER until issue 11 lands: the audit stage will produce the real
SBOM and provenance for every pushed manifest. Until then `documents` builds
minimal ones from what the image's own labels record (gosu's version and
sha256, the base, the revision), enough to attest and to check gosu's sha256
against the label. The lead replaces `documents` with issue 11's; the
signing code only needs its signature: (registry, repository, manifest
digest) -> {cosign attestation type: predicate}.
"""

from __future__ import annotations

from . import oci
from .images import LABEL
from .registry import Registry


def documents(registry: Registry, repo: str, digest: str) -> dict[str, dict]:
    labels = oci.child_config(registry, repo, digest).get("config", {}).get("Labels") or {}
    gosu = {"type": "application", "name": "gosu", "version": labels.get(f"{LABEL}.gosu.version", ""),
            "hashes": [{"alg": "SHA-256", "content": labels.get(f"{LABEL}.gosu.sha256", "")}],
            "purl": f"pkg:golang/github.com/tianon/gosu@v{labels.get(f'{LABEL}.gosu.version', '')}"}
    sbom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "metadata": {"component": {"type": "container", "name": repo, "version": digest}},
            "components": [gosu]}
    provenance = {
        "buildDefinition": {
            "buildType": "https://github.com/org/base-gosu/build@v1",
            "externalParameters": {"revision": labels.get("org.opencontainers.image.revision", "")},
            "resolvedDependencies": [
                {"uri": labels.get("org.opencontainers.image.base.name", ""),
                 "digest": {"sha256": labels.get(f"{LABEL}.base.platform-digest", "").removeprefix("sha256:")}},
                {"uri": "gosu", "digest": {"sha256": labels.get(f"{LABEL}.gosu.sha256", "")}},
            ]},
        "runDetails": {"builder": {"id": "https://github.com/org/base-gosu"}},
    }
    return {"cyclonedx": sbom, "slsaprovenance1": provenance}


def gosu_sha256(sbom: dict) -> str | None:
    """gosu's SHA-256 as a CycloneDX SBOM lists it (any depth), or None."""
    stack = list(sbom.get("components") or [])
    while stack:
        c = stack.pop()
        if c.get("name") == "gosu":
            for h in c.get("hashes") or []:
                if h.get("alg") in ("SHA-256", "sha256"):
                    return h.get("content")
        stack.extend(c.get("components") or [])
    return None
