"""The documents attested to each per-arch manifest: the SBOM and provenance the audit stage attached.

publish attaches both as OCI referrers right after each manifest
(builder/audit); signing attests the very same documents with cosign, read
back from the registry, so one set of facts is both attached and signed:
the CycloneDX SBOM as it is (`--type cyclonedx`), and the SLSA v1 predicate
of the in-toto provenance (`--type slsaprovenance1`; cosign wraps it in its
own statement whose subject is the manifest).
"""

from __future__ import annotations

from builder.consumer import show
from builder.core.registry import Registry
from builder.publish.signing import SigningError


class DocumentError(SigningError):
    pass


def documents(registry: Registry, repo: str, digest: str) -> dict[str, dict]:
    """{cosign attestation type: predicate} for one per-arch manifest."""
    image = show.Image("", digest)
    try:
        sbom = show.document(registry, repo, image, "sbom")
        provenance = show.document(registry, repo, image, "provenance")
    except show.ShowError as e:
        raise DocumentError(f"nothing to attest: {e}") from None
    subjects = {s.get("digest", {}).get("sha256") for s in provenance.get("subject", [])}
    if digest.split(":", 1)[1] not in subjects:
        raise DocumentError(f"{registry.host}/{repo}@{digest}: its provenance referrer names another subject "
                            f"({', '.join(sorted(map(str, subjects)))}); not attesting it")
    return {"cyclonedx": sbom, "slsaprovenance1": provenance["predicate"]}


def gosu_sha256(sbom: dict) -> str | None:
    """gosu's SHA-256 as a CycloneDX SBOM lists it (the component with bom-ref `gosu`, at any depth), or None."""
    stack = list(sbom.get("components") or [])
    while stack:
        c = stack.pop()
        if c.get("bom-ref") == "gosu" or c.get("name") == "gosu":
            for h in c.get("hashes") or []:
                if h.get("alg") in ("SHA-256", "sha256"):
                    return h.get("content")
        stack.extend(c.get("components") or [])
    return None
