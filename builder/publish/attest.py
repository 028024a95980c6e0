"""The documents attested to each per-arch manifest: the SBOM and provenance the audit stage attached.

publish attaches both as OCI referrers right after each manifest
(build/audit); signing attests the very same documents with cosign, so one
set of facts is both attached and signed: the CycloneDX SBOM as it is
(`--type cyclonedx`), and the SLSA v1 predicate of the in-toto provenance
(`--type slsaprovenance1`; cosign wraps it in its own statement whose subject
is the manifest). The documents come from the run that attached them; only
an image pushed by an earlier run and never attested has its documents read
back from the registry.
"""

from __future__ import annotations

import json

from builder.image.audit import openvex, provenance as provenance_doc, referrers, sbom as sbom_doc
from builder.core.registry import Registry
from builder.publish.signing import Documents, SigningError


class DocumentError(SigningError):
    pass


def predicates(sbom: bytes, provenance: bytes, digest: str, where: str = "", vex: bytes = b"") -> dict[str, dict]:
    """{cosign attestation type: predicate} for the per-arch manifest `digest`, from its two documents."""
    statement = json.loads(provenance)
    subjects = {s.get("digest", {}).get("sha256") for s in statement.get("subject", [])}
    if digest.split(":", 1)[1] not in subjects:
        raise DocumentError(f"{where or digest}: its provenance names another subject "
                            f"({', '.join(sorted(map(str, subjects)))}); not attesting it")
    out = {"cyclonedx": json.loads(sbom), "slsaprovenance1": statement["predicate"]}
    if vex:  # only an image whose gosu was scanned has one
        out["openvex"] = json.loads(vex)
    return out


def read_back(registry: Registry, repo: str, digest: str) -> dict[str, dict]:
    """The predicates of an image this run did not make, from the referrers an earlier run attached."""
    found = {kind: referrers.latest(registry, repo, digest, media)
             for kind, media in (("sbom", sbom_doc.MEDIA_TYPE), ("provenance", provenance_doc.MEDIA_TYPE))}
    where = f"{registry.host}/{repo}@{digest}"
    missing = [kind for kind, doc in found.items() if doc is None]
    if missing:
        raise DocumentError(f"nothing to attest: {where} carries no {' or '.join(missing)} referrer")
    vex = referrers.latest(registry, repo, digest, openvex.MEDIA_TYPE) or b""
    return predicates(found["sbom"], found["provenance"], digest, where, vex)


def documents_for(made: dict[str, dict[str, dict]]) -> Documents:
    """What `signing.seal` attests: the documents this run made (by digest), else those attached before."""
    def documents(registry: Registry, repo: str, digest: str) -> dict[str, dict]:
        return made.get(digest) or read_back(registry, repo, digest)
    return documents
